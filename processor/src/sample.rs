//! Sample data for examples, tests and benchmarks.
//!
//! Invariant: no production code depends on this module (the date maths it uses is
//! `calendar`, which production code shares); what it generates is a function of its arguments.
//!
//! - [`access_log`]: an nginx "combined" access log generator with Zipf-like URL popularity, and
//!   the parsing of its lines (field 7 as the URL, the bracketed time as event time).

pub mod access_log;
