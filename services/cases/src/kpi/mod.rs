//! The KPI projection: daily figures per program, day (in the site's time
//! zone) and channel, kept current from the events the four topics carry, as
//! the timeline records them, and rebuilt from the timeline on demand.
//!
//! It follows the timeline rather than the topics because the timeline holds
//! every event of every case for six years, while the topics keep 30 to 90
//! days: a rebuild from the topics would lose the older figures.
//!
//! `fold` is the arithmetic (pure), `store` its tables, `projector` the loop
//! that keeps it current, `query` what `GetKpis` answers, `flags` what
//! `ListAdverseEvents` answers (the possible adverse events and their
//! decisions, kept beside the figures).

pub mod flags;
pub mod fold;
pub mod projector;
pub mod query;
pub mod store;
