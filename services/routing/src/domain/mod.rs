//! The routing service's pure logic: no I/O, unit-tested.

pub mod decision;
pub mod keywords;
pub mod opt_out_scope;
pub mod roster;
pub mod screening;
pub mod text;
pub mod voice;
