//! Which programs' messages an opt-out stops (`TOUCHPOINT_OPT_OUT_SCOPE`).
//!
//! Under `all-programs` (the default, and the FCC's "revoke all" rule from
//! 2027-01-31) a STOP stops every program's messages to the number. Under
//! `program` it stops the programs whose messages it answers: those of the
//! cases that messaged the number on the channel inside the reply window (for
//! a keyword review, the reviewed message's; for a call's disposition, the
//! call's case). Programs share sending numbers, so when it answers no
//! program's message (nothing sent lately, or a number no case holds) it
//! cannot be tied to one and stops them all: the doubt falls on the side of
//! not messaging.

use std::collections::BTreeSet;
use std::str::FromStr;

/// What an opt-out stops, as the deployment sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptOutScope {
    /// Every program's messages.
    #[default]
    AllPrograms,
    /// The messages of the programs it answers.
    Program,
}

impl FromStr for OptOutScope {
    type Err = ();

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "all-programs" => Ok(OptOutScope::AllPrograms),
            "program" => Ok(OptOutScope::Program),
            _ => Err(()),
        }
    }
}

/// A case that holds the number or address an opt-out came from.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    /// The case's program.
    pub program_id: &'a str,
    /// The opt-out answers this case's message.
    pub answered: bool,
}

/// The programs one opt-out stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every program's messages, on every case that holds the number.
    Every,
    /// These programs' messages, on the cases of these programs.
    Only(BTreeSet<String>),
}

impl OptOutScope {
    /// What an opt-out stops, from the cases that hold its number.
    pub fn reach<'a>(self, holders: impl IntoIterator<Item = Holder<'a>>) -> Reach {
        let answered: BTreeSet<String> = holders
            .into_iter()
            .filter(|h| h.answered)
            .map(|h| h.program_id.to_owned())
            .collect();
        match self {
            OptOutScope::Program if !answered.is_empty() => Reach::Only(answered),
            _ => Reach::Every,
        }
    }
}

impl Reach {
    /// Whether a case of `program_id` takes the opt-out, and the program its
    /// event names ("" for every program).
    pub fn for_case(&self, program_id: &str) -> Option<String> {
        match self {
            Reach::Every => Some(String::new()),
            Reach::Only(programs) => programs.contains(program_id).then(|| program_id.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(program_id: &str, answered: bool) -> Holder<'_> {
        Holder {
            program_id,
            answered,
        }
    }

    #[test]
    fn the_setting_reads_its_two_values_and_refuses_others() {
        assert_eq!("all-programs".parse(), Ok(OptOutScope::AllPrograms));
        assert_eq!("program".parse(), Ok(OptOutScope::Program));
        assert!("programme".parse::<OptOutScope>().is_err());
        assert_eq!(OptOutScope::default(), OptOutScope::AllPrograms);
    }

    #[test]
    fn by_default_an_opt_out_stops_every_program_on_every_case() {
        let holders = [holder("adherence", true), holder("refill-reminder", false)];
        let reach = OptOutScope::AllPrograms.reach(holders);
        assert_eq!(reach, Reach::Every);
        assert_eq!(reach.for_case("refill-reminder"), Some(String::new()));
    }

    #[test]
    fn scoped_by_program_it_stops_the_programs_it_answers() {
        let holders = [
            holder("adherence", true),
            holder("refill-reminder", false),
            holder("adherence", false),
        ];
        let reach = OptOutScope::Program.reach(holders);
        assert_eq!(reach.for_case("adherence"), Some("adherence".to_owned()));
        assert_eq!(reach.for_case("refill-reminder"), None);
    }

    #[test]
    fn scoped_by_program_an_opt_out_that_answers_nothing_stops_everything() {
        let holders = [holder("adherence", false), holder("refill-reminder", false)];
        assert_eq!(OptOutScope::Program.reach(holders), Reach::Every);
        assert_eq!(OptOutScope::Program.reach([]), Reach::Every);
    }
}
