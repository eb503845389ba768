//! What a registered processor version is built from: a spec file ([`Spec`], TOML) or a SQL
//! persistent query ([`SqlDef`]). Both are stored as text in `__processors`, so the registry
//! record format is unchanged: a text with a top-level `sql` key is a SQL definition, any
//! other text is a spec (every record written before SQL existed parses as before).
//!
//! A SQL definition is self-contained: besides its statement it carries the statements that
//! declared what it reads (`context`, the broker's SQL catalog when it was created), so a
//! serving version and a building one compile from their own text even after the catalog has
//! moved on. Compiling replays the context into a fresh [`Session`] with the broker's
//! functions, then compiles the statement at the stored version.
//!
//! The broker's SQL functions ([`builtin_functions`]) and the replay of scripts into a session
//! ([`replay`]) live here, below the SQL service, because compiling a definition needs them.
//!
//! Invariant: a definition that parses has compiled (for SQL) or checked (for a spec), so a
//! registered version always knows its name, version, inputs and outputs.

use eddy_processor::Processor;
use eddy_sql::{FunctionRegistry, Outcome, Session, SqlType};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::Spec;
use crate::error::BrokerError;

/// The functions every broker session has besides the built-ins: the course's example UDF
/// `qualifyPromotion(km DOUBLE) → BOOLEAN`, TRUE when a ride is within 5 km of its
/// destination (`examples/rideshare.sql`).
pub fn builtin_functions() -> FunctionRegistry {
    let mut fns = FunctionRegistry::new();
    fns.register("qualifyPromotion", Some(vec![SqlType::Double]), SqlType::Boolean, |args| {
        Ok(args.first().and_then(Value::as_f64).map_or(Value::Null, |km| Value::Bool(km <= 5.0)))
    });
    fns
}

/// Runs `scripts` (text, version) into `session`, each whole or not at all, retrying the ones
/// that fail until a round makes no progress; returns the ones that never ran, with why.
pub fn replay<'a>(
    session: &mut Session,
    scripts: impl Iterator<Item = (&'a str, u32)>,
) -> Vec<(String, String)> {
    let mut pending: Vec<(&str, u32)> = scripts.collect();
    loop {
        let before = pending.len();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for (sql, version) in pending {
            let mut next = session.clone();
            match next.execute(sql, version) {
                Ok(_) => *session = next,
                Err(e) => {
                    failed.push((sql, version));
                    errors.push((sql.to_string(), e.to_string()));
                }
            }
        }
        if failed.is_empty() || failed.len() == before {
            return errors;
        }
        pending = failed;
    }
}

/// A SQL persistent query as the registry stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlDef {
    /// The processor's name: the query's target.
    pub name: String,
    pub version: u32,
    /// The `CREATE ... AS SELECT` statement.
    pub sql: String,
    /// Scripts that declare what the statement reads, replayed first, in order.
    #[serde(default)]
    pub context: Vec<String>,
}

/// A processor version's definition.
#[derive(Debug, Clone)]
pub enum Definition {
    Spec(Spec),
    Sql { def: SqlDef, processor: Processor, outputs: Vec<String> },
}

impl Definition {
    /// Parses a stored or deployed text: SQL when it has a top-level `sql` key, else a spec.
    pub fn parse(text: &str) -> Result<Definition, BrokerError> {
        let is_sql = toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("sql"));
        if !is_sql {
            return Spec::parse(text).map(Definition::Spec);
        }
        let def: SqlDef = toml::from_str(text)
            .map_err(|e| BrokerError::InvalidSpec(format!("SQL definition: {e}")))?;
        def.compile()
    }

    pub fn name(&self) -> &str {
        match self {
            Definition::Spec(s) => &s.name,
            Definition::Sql { def, .. } => &def.name,
        }
    }

    pub fn version(&self) -> u32 {
        match self {
            Definition::Spec(s) => s.version,
            Definition::Sql { def, .. } => def.version,
        }
    }

    pub fn is_sql(&self) -> bool {
        matches!(self, Definition::Sql { .. })
    }

    /// How long a silent source partition holds windows open (`None`: for ever).
    pub fn idle_timeout(&self) -> Option<std::time::Duration> {
        match self {
            Definition::Spec(s) => s.idle_timeout_ms.map(std::time::Duration::from_millis),
            Definition::Sql { .. } => None,
        }
    }

    pub fn threads(&self) -> usize {
        match self {
            Definition::Spec(s) => s.threads.unwrap_or(1),
            Definition::Sql { .. } => 1,
        }
    }

    /// Builds the processor; `partitions` gives an existing topic's partition count.
    pub fn compile(
        &self,
        partitions: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<Processor, BrokerError> {
        match self {
            Definition::Spec(s) => s.compile(partitions),
            Definition::Sql { processor, .. } => Ok(processor.clone()),
        }
    }

    /// The topics a full replay reads from offset zero.
    pub fn inputs(&self) -> Vec<String> {
        match self {
            Definition::Spec(s) => std::iter::once(s.source.topic.clone())
                .chain(s.tables.iter().map(|t| t.topic.clone()))
                .collect(),
            Definition::Sql { processor, .. } => processor.source_topics(),
        }
    }

    pub fn outputs(&self) -> Vec<String> {
        match self {
            Definition::Spec(s) => s.outputs(),
            Definition::Sql { outputs, .. } => outputs.clone(),
        }
    }

    /// The text of the same definition at `version`.
    pub fn text_at(&self, version: u32) -> Result<String, BrokerError> {
        let name = self.name().to_string();
        let written = match self {
            Definition::Spec(s) => toml::to_string(&Spec { version, ..s.clone() }),
            Definition::Sql { def, .. } => toml::to_string(&SqlDef { version, ..def.clone() }),
        };
        written.map_err(|e| BrokerError::InvalidSpec(format!("{name}: cannot write the spec: {e}")))
    }
}

impl SqlDef {
    /// The registry text of this definition.
    pub fn to_text(&self) -> Result<String, BrokerError> {
        toml::to_string(self)
            .map_err(|e| BrokerError::InvalidSpec(format!("{}: cannot write: {e}", self.name)))
    }

    /// Replays the context, then compiles the statement as `version`.
    pub fn compile(self) -> Result<Definition, BrokerError> {
        let mut session = Session::new(builtin_functions());
        replay(&mut session, self.context.iter().map(|s| (s.as_str(), 1)));
        let fail = |why: String| {
            BrokerError::InvalidSpec(format!(
                "SQL processor {} version {}: {why}",
                self.name, self.version
            ))
        };
        let outcomes = session.execute(&self.sql, self.version).map_err(|e| fail(e.to_string()))?;
        // A declared table's processor only materializes its topic: it writes no output.
        let (compiled, writes) = match outcomes.into_iter().next() {
            Some(Outcome::Query { compiled, .. }) => (compiled, true),
            Some(Outcome::Materialized { compiled, .. }) => (compiled, false),
            _ => {
                return Err(fail(
                    "the statement is not CREATE ... AS SELECT or CREATE TABLE".into(),
                ));
            }
        };
        let processor = compiled.processor;
        if processor.name() != self.name || processor.version() != self.version {
            return Err(fail(format!(
                "the statement compiles to {} version {}",
                processor.name(),
                processor.version()
            )));
        }
        let outputs = if writes { vec![compiled.target.topic.clone()] } else { Vec::new() };
        Ok(Definition::Sql { def: self, processor, outputs })
    }
}
