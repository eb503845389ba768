//! Aggregations: what an `aggregate` keeps per key (or per key and window) and what it reports.
//!
//! An [`Aggregator`] folds values into an accumulator (`add`), combines two accumulators
//! (`merge`, used when session windows merge) and turns an accumulator into the table's value
//! (`result`). Accumulators are serde values: they go into snapshots. Built in: [`Count`],
//! [`Sum`], [`Min`], [`Max`], [`Avg`], [`Latest`] (by event time) and [`Fold`] for your own.

use std::marker::PhantomData;
use std::ops::Add;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Values an operator keeps in state: cloneable serde data.
pub trait StateData: Clone + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + 'static> StateData for T {}

/// Folds values of type `V`.
pub trait Aggregator<V>: Send + Sync + 'static {
    type Acc: StateData;
    type Out: StateData;
    fn init(&self) -> Self::Acc;
    /// The accumulator of a new key of an unwindowed aggregate, given the key's state
    /// encoding (its JSON): for aggregators whose result shows the key.
    fn init_keyed(&self, key: &[u8]) -> Self::Acc {
        let _ = key;
        self.init()
    }
    /// Adds one value with event time `ts`.
    fn add(&self, acc: &mut Self::Acc, value: &V, ts: i64);
    /// Folds `other` into `into` (session windows merging).
    fn merge(&self, into: &mut Self::Acc, other: Self::Acc);
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// Numbers `Sum`, `Min` and `Max` work on.
pub trait Number:
    StateData + Copy + Default + PartialOrd + Add<Output = Self> + Send + Sync
{
}
impl Number for i64 {}
impl Number for u64 {}
impl Number for i32 {}
impl Number for u32 {}
impl Number for f64 {}

/// Number of values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl<V> Aggregator<V> for Count {
    type Acc = u64;
    type Out = u64;
    fn init(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: &V, _: i64) {
        *acc += 1;
    }
    fn merge(&self, into: &mut u64, other: u64) {
        *into += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

macro_rules! numeric_aggregator {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name<F, N> {
            f: F,
            _n: PhantomData<fn() -> N>,
        }

        impl<F, N> $name<F, N> {
            /// Over the number `f` picks from each value.
            pub fn new(f: F) -> Self {
                Self { f, _n: PhantomData }
            }
        }

        impl<F, N> std::fmt::Debug for $name<F, N> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    };
}

numeric_aggregator!(
    /// Sum of a number taken from each value.
    Sum
);
numeric_aggregator!(
    /// Smallest number taken from the values (`None` before the first).
    Min
);
numeric_aggregator!(
    /// Largest number taken from the values (`None` before the first).
    Max
);

impl<V, N: Number, F: Fn(&V) -> N + Send + Sync + 'static> Aggregator<V> for Sum<F, N> {
    type Acc = N;
    type Out = N;
    fn init(&self) -> N {
        N::default()
    }
    fn add(&self, acc: &mut N, value: &V, _: i64) {
        *acc = *acc + (self.f)(value);
    }
    fn merge(&self, into: &mut N, other: N) {
        *into = *into + other;
    }
    fn result(&self, acc: &N) -> N {
        *acc
    }
}

fn pick<N: Number>(a: Option<N>, b: N, keep_a: impl Fn(N, N) -> bool) -> Option<N> {
    match a {
        Some(a) if keep_a(a, b) => Some(a),
        _ => Some(b),
    }
}

impl<V, N: Number, F: Fn(&V) -> N + Send + Sync + 'static> Aggregator<V> for Min<F, N> {
    type Acc = Option<N>;
    type Out = Option<N>;
    fn init(&self) -> Option<N> {
        None
    }
    fn add(&self, acc: &mut Option<N>, value: &V, _: i64) {
        *acc = pick(*acc, (self.f)(value), |a, b| a <= b);
    }
    fn merge(&self, into: &mut Option<N>, other: Option<N>) {
        if let Some(o) = other {
            *into = pick(*into, o, |a, b| a <= b);
        }
    }
    fn result(&self, acc: &Option<N>) -> Option<N> {
        *acc
    }
}

impl<V, N: Number, F: Fn(&V) -> N + Send + Sync + 'static> Aggregator<V> for Max<F, N> {
    type Acc = Option<N>;
    type Out = Option<N>;
    fn init(&self) -> Option<N> {
        None
    }
    fn add(&self, acc: &mut Option<N>, value: &V, _: i64) {
        *acc = pick(*acc, (self.f)(value), |a, b| a >= b);
    }
    fn merge(&self, into: &mut Option<N>, other: Option<N>) {
        if let Some(o) = other {
            *into = pick(*into, o, |a, b| a >= b);
        }
    }
    fn result(&self, acc: &Option<N>) -> Option<N> {
        *acc
    }
}

/// Mean of a number taken from each value (`None` before the first).
pub struct Avg<F> {
    f: F,
}

impl<F> Avg<F> {
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> std::fmt::Debug for Avg<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Avg")
    }
}

impl<V, F: Fn(&V) -> f64 + Send + Sync + 'static> Aggregator<V> for Avg<F> {
    /// (sum, count)
    type Acc = (f64, u64);
    type Out = Option<f64>;
    fn init(&self) -> (f64, u64) {
        (0.0, 0)
    }
    fn add(&self, acc: &mut (f64, u64), value: &V, _: i64) {
        acc.0 += (self.f)(value);
        acc.1 += 1;
    }
    fn merge(&self, into: &mut (f64, u64), other: (f64, u64)) {
        into.0 += other.0;
        into.1 += other.1;
    }
    fn result(&self, acc: &(f64, u64)) -> Option<f64> {
        (acc.1 > 0).then(|| acc.0 / acc.1 as f64)
    }
}

/// The value with the largest event time; on a tie, the one processed last. Being a function of
/// event times rather than arrival order, it gives the same answer for out-of-order input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latest;

impl<V: StateData> Aggregator<V> for Latest {
    type Acc = Option<(i64, V)>;
    type Out = Option<V>;
    fn init(&self) -> Self::Acc {
        None
    }
    fn add(&self, acc: &mut Self::Acc, value: &V, ts: i64) {
        if acc.as_ref().is_none_or(|(t, _)| ts >= *t) {
            *acc = Some((ts, value.clone()));
        }
    }
    fn merge(&self, into: &mut Self::Acc, other: Self::Acc) {
        if let Some((t, v)) = other
            && into.as_ref().is_none_or(|(mine, _)| t >= *mine)
        {
            *into = Some((t, v));
        }
    }
    fn result(&self, acc: &Self::Acc) -> Option<V> {
        acc.as_ref().map(|(_, v)| v.clone())
    }
}

/// A user-defined fold: `init`, `add(acc, value, ts)` and `merge(into, other)` (only called by
/// session windows). The accumulator is also the table's value.
pub struct Fold<A, I, D, M> {
    init: I,
    add: D,
    merge: M,
    _a: PhantomData<fn() -> A>,
}

impl<A, I, D, M> Fold<A, I, D, M> {
    pub fn new(init: I, add: D, merge: M) -> Self {
        Self { init, add, merge, _a: PhantomData }
    }
}

impl<A, I, D, M> std::fmt::Debug for Fold<A, I, D, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fold")
    }
}

impl<V, A, I, D, M> Aggregator<V> for Fold<A, I, D, M>
where
    A: StateData,
    I: Fn() -> A + Send + Sync + 'static,
    D: Fn(&mut A, &V, i64) + Send + Sync + 'static,
    M: Fn(&mut A, A) + Send + Sync + 'static,
{
    type Acc = A;
    type Out = A;
    fn init(&self) -> A {
        (self.init)()
    }
    fn add(&self, acc: &mut A, value: &V, ts: i64) {
        (self.add)(acc, value, ts)
    }
    fn merge(&self, into: &mut A, other: A) {
        (self.merge)(into, other)
    }
    fn result(&self, acc: &A) -> A {
        acc.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold<A: Aggregator<i64>>(agg: &A, values: &[(i64, i64)]) -> A::Out {
        let mut acc = agg.init();
        for (v, ts) in values {
            agg.add(&mut acc, v, *ts);
        }
        agg.result(&acc)
    }

    #[test]
    fn built_in_aggregators() {
        let values = [(5, 10), (-3, 30), (9, 20), (9, 30)];
        assert_eq!(fold(&Count, &values), 4);
        assert_eq!(fold(&Sum::new(|v: &i64| *v), &values), 20);
        assert_eq!(fold(&Min::new(|v: &i64| *v), &values), Some(-3));
        assert_eq!(fold(&Max::new(|v: &i64| *v), &values), Some(9));
        assert_eq!(fold(&Avg::new(|v: &i64| *v as f64), &values), Some(5.0));
        assert_eq!(fold(&Min::new(|v: &i64| *v), &[]), None);
        // Latest by event time; the tie at 30 goes to the one processed last.
        assert_eq!(fold(&Latest, &values), Some(9));
        assert_eq!(fold(&Latest, &[(1, 50), (2, 40)]), Some(1));
        let concat = Fold::new(
            Vec::new,
            |acc: &mut Vec<i64>, v: &i64, _| acc.push(*v),
            |a: &mut Vec<i64>, b: Vec<i64>| a.extend(b),
        );
        assert_eq!(fold(&concat, &values), vec![5, -3, 9, 9]);
    }

    /// Adding two halves separately and merging gives what adding everything gives.
    fn assert_merge<A: Aggregator<i64>>(agg: A)
    where
        A::Out: std::fmt::Debug + PartialEq,
    {
        let (a, b) = ([(1, 1), (7, 2)], [(-4, 3), (2, 4)]);
        let add = |values: &[(i64, i64)]| {
            let mut acc = agg.init();
            values.iter().for_each(|(v, t)| agg.add(&mut acc, v, *t));
            acc
        };
        let mut x = add(&a);
        agg.merge(&mut x, add(&b));
        let all: Vec<_> = a.iter().chain(&b).copied().collect();
        assert_eq!(agg.result(&x), agg.result(&add(&all)));
    }

    #[test]
    fn merge_equals_adding_everything() {
        assert_merge(Count);
        assert_merge(Sum::new(|v: &i64| *v));
        assert_merge(Min::new(|v: &i64| *v));
        assert_merge(Max::new(|v: &i64| *v));
        assert_merge(Avg::new(|v: &i64| *v as f64));
        assert_merge(Latest);
    }
}
