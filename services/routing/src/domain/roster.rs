//! The coordinator roster: who works which programs in which languages, their
//! shifts in their own time zone, their presence and how much work they hold.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Datelike as _, NaiveTime, TimeDelta, TimeZone as _, Utc, Weekday};
use chrono_tz::Tz;
use touchpoint_proto::v1::Language;

/// A coordinator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A support coordinator.
    Coordinator,
    /// A patient navigator.
    Navigator,
}

/// Whether a coordinator can take a contact now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Free to take one.
    Available,
    /// On a call or otherwise occupied.
    Busy,
    /// Away from the desk.
    Away,
    /// Logged off.
    Offline,
}

/// One weekly shift, in the coordinator's time zone. A shift whose end is not
/// after its start runs past midnight into the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    /// The day it starts.
    pub day: Weekday,
    /// When it starts, local time.
    pub start: NaiveTime,
    /// When it ends, local time.
    pub end: NaiveTime,
}

impl Shift {
    fn overnight(&self) -> bool {
        self.end <= self.start
    }
}

/// Where a person's calls ring.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DialTarget {
    /// Their Twilio Client, whose identity is their roster id.
    #[default]
    Client,
    /// A SIP address (`sip:carla@hub.sip.twilio.com`): a desk phone.
    Sip(String),
    /// A phone number (E.164): their own phone.
    Number(String),
}

impl DialTarget {
    /// `raw` as the roster stores and the API takes it: empty for the client,
    /// `sip:…` or an E.164 number.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        const WHAT: &str = "empty (their client), a sip: address, or a number such as +12125550100";
        if raw.is_empty() {
            return Ok(Self::Client);
        }
        if let Some(address) = raw.strip_prefix("sip:") {
            let fits = address.contains('@')
                && raw.len() <= 256
                && address
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@.-_+:;=".contains(c));
            return if fits {
                Ok(Self::Sip(raw.to_owned()))
            } else {
                Err(WHAT)
            };
        }
        let digits = raw.strip_prefix('+').unwrap_or_default();
        if (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
            Ok(Self::Number(raw.to_owned()))
        } else {
            Err(WHAT)
        }
    }

    /// How the roster stores it (and the API shows it).
    pub fn as_stored(&self) -> &str {
        match self {
            Self::Client => "",
            Self::Sip(address) => address,
            Self::Number(number) => number,
        }
    }
}

/// A coordinator or navigator on the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Their id.
    pub id: String,
    /// Coordinator or navigator.
    pub role: Role,
    /// Their time zone; shifts are read in it.
    pub time_zone: Tz,
    /// Programs they work.
    pub programs: BTreeSet<String>,
    /// Languages they speak with patients.
    pub languages: BTreeSet<Language>,
    /// Further skills (e.g. `reimbursement`); not used by the routing rules yet.
    pub skills: BTreeSet<String>,
    /// Contacts and tasks they may hold at once.
    pub capacity: u32,
    /// Contacts and tasks they hold now.
    pub open_tasks: u32,
    /// Their presence.
    pub presence: Presence,
    /// Their weekly shifts.
    pub shifts: Vec<Shift>,
    /// When they were last given a contact by the skills rule.
    pub last_assigned_at: Option<DateTime<Utc>>,
    /// Who last changed their settings ("" before anyone did).
    pub updated_by: String,
    /// Where their calls ring.
    pub dial_to: DialTarget,
}

impl Member {
    /// Whether `now` falls inside one of their shifts.
    pub fn on_shift(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.time_zone);
        let (today, time) = (local.weekday(), local.time());
        self.shifts.iter().any(|s| {
            if s.overnight() {
                (s.day == today && time >= s.start) || (s.day == today.pred() && time < s.end)
            } else {
                s.day == today && s.start <= time && time < s.end
            }
        })
    }

    /// Whether they can take a contact now: on shift and available.
    pub fn reachable(&self, now: DateTime<Utc>) -> bool {
        self.presence == Presence::Available && self.on_shift(now)
    }

    /// The first shift start after `now`, if they have shifts.
    pub fn next_shift_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_today = now.with_timezone(&self.time_zone).date_naive();
        (0..=7)
            .filter_map(|days| local_today.checked_add_signed(TimeDelta::days(days)))
            .flat_map(|date| {
                self.shifts
                    .iter()
                    .filter(move |s| s.day == date.weekday())
                    .filter_map(move |s| {
                        let local = date.and_time(s.start);
                        // A start inside a spring-forward gap begins an hour on.
                        self.time_zone
                            .from_local_datetime(&local)
                            .earliest()
                            .or_else(|| {
                                self.time_zone
                                    .from_local_datetime(&(local + TimeDelta::hours(1)))
                                    .earliest()
                            })
                    })
            })
            .map(|start| start.with_timezone(&Utc))
            .filter(|start| *start > now)
            .min()
    }
}

/// The roster, by id.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    members: Vec<Member>,
    by_id: HashMap<String, usize>,
    /// How many changes this roster has taken in place, so a reload read
    /// from storage before one of them does not undo it.
    changes: u64,
}

impl Roster {
    /// A roster of `members`; a later member with an id already seen replaces it.
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        let mut roster = Self::default();
        for member in members {
            roster.upsert(member);
        }
        roster
    }

    /// Adds `member` or replaces the one with its id.
    pub fn upsert(&mut self, member: Member) {
        self.changes += 1;
        match self.by_id.get(&member.id) {
            Some(&i) => self.members[i] = member,
            None => {
                self.by_id.insert(member.id.clone(), self.members.len());
                self.members.push(member);
            }
        }
    }

    /// The member with `id`.
    pub fn get(&self, id: &str) -> Option<&Member> {
        self.by_id.get(id).map(|&i| &self.members[i])
    }

    /// The member with `id`, to change.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Member> {
        let i = *self.by_id.get(id)?;
        self.changes += 1;
        Some(&mut self.members[i])
    }

    /// A mark to give [`Roster::reload`]: the changes taken so far.
    pub fn mark(&self) -> u64 {
        self.changes
    }

    /// Takes `fresh`, read from storage after `mark` was taken, unless this
    /// roster changed in place since then (the read may predate that change;
    /// the next reload brings both). Returns whether it took it.
    pub fn reload(&mut self, mark: u64, fresh: Roster) -> bool {
        if self.changes != mark {
            return false;
        }
        let changes = self.changes;
        *self = fresh;
        self.changes = changes;
        true
    }

    /// Every member, in the order first added.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> Member {
        Member {
            id: id.into(),
            role: Role::Coordinator,
            time_zone: chrono_tz::UTC,
            programs: BTreeSet::new(),
            languages: BTreeSet::new(),
            skills: BTreeSet::new(),
            capacity: 1,
            open_tasks: 0,
            presence: Presence::Available,
            shifts: Vec::new(),
            last_assigned_at: None,
            updated_by: String::new(),
            dial_to: DialTarget::Client,
        }
    }

    #[test]
    fn a_dial_target_is_a_client_a_sip_address_or_a_number_and_nothing_else() {
        assert_eq!(DialTarget::parse(" "), Ok(DialTarget::Client));
        assert_eq!(
            DialTarget::parse("sip:carla@hub.sip.twilio.com"),
            Ok(DialTarget::Sip("sip:carla@hub.sip.twilio.com".into()))
        );
        assert_eq!(
            DialTarget::parse("+12125550100"),
            Ok(DialTarget::Number("+12125550100".into()))
        );
        for bad in ["sip:carla", "sip:a@b\"><x", "2125550100", "+1212", "carla"] {
            assert!(DialTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_reload_read_before_a_member_was_added_does_not_drop_them() {
        let mut roster = Roster::new([member("ana")]);
        let mark = roster.mark();
        let read_before = Roster::new([member("ana")]);
        roster.upsert(member("carla"));
        assert!(!roster.reload(mark, read_before));
        assert!(roster.get("carla").is_some());
    }

    #[test]
    fn a_reload_with_no_change_since_takes_what_storage_holds() {
        let mut roster = Roster::new([member("ana")]);
        let mark = roster.mark();
        assert!(roster.reload(mark, Roster::new([member("bo")])));
        assert!(roster.get("ana").is_none());
        assert!(roster.get("bo").is_some());
        roster.upsert(member("carla"));
        assert!(!roster.reload(mark, Roster::new([member("bo")])));
    }
}
