//! The routing service's pure logic: no I/O, unit-tested.

pub mod decision;
pub mod keywords;
pub mod roster;
pub mod screening;
pub mod text;
