//! Who is signed in: their roster id, roles, the programs they may see and the
//! language their screens are in.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a user does at the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Makes scripted calls and answers patients.
    Coordinator,
    /// Owns cases.
    Navigator,
    /// Runs a team's day: the roster, the queues, the SLAs.
    Supervisor,
    /// Leads a site: its KPIs against the programs' targets.
    SiteLeader,
    /// Reviews adverse events.
    Pharmacovigilance,
    /// Audits who saw what.
    Compliance,
}

impl Role {
    /// The role's name in claims.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Navigator => "navigator",
            Role::Supervisor => "supervisor",
            Role::SiteLeader => "site_leader",
            Role::Pharmacovigilance => "pharmacovigilance",
            Role::Compliance => "compliance",
        }
    }
}

impl FromStr for Role {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "coordinator" => Role::Coordinator,
            "navigator" => Role::Navigator,
            "supervisor" => Role::Supervisor,
            "site_leader" => Role::SiteLeader,
            "pharmacovigilance" => Role::Pharmacovigilance,
            "compliance" => Role::Compliance,
            _ => return Err(()),
        })
    }
}

/// The languages the desk's screens are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// English.
    En,
    /// Spanish.
    Es,
}

impl Language {
    /// The language of a BCP 47 tag such as `es-US`, if the desk speaks it.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Language::En),
            "es" => Some(Language::Es),
            _ => None,
        }
    }

    /// The two-letter code, as `<html lang>` takes it.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Es => "es",
        }
    }
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Their roster id (a coordinator's id in routing).
    pub id: String,
    /// Their display name.
    pub name: String,
    /// What they do.
    pub roles: Vec<Role>,
    /// The programs whose cases they may see.
    pub programs: Vec<String>,
    /// Their screens' language.
    pub language: Language,
}

impl User {
    /// A user, if `id` is a usable roster id (letters, digits, `.`, `_`, `-`,
    /// `@`; at most 128).
    pub fn new(
        id: &str,
        name: &str,
        roles: Vec<Role>,
        programs: Vec<String>,
        language: Language,
    ) -> Option<Self> {
        let usable = !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        usable.then(|| Self {
            id: id.to_owned(),
            name: name.chars().take(200).collect(),
            roles,
            programs,
            language,
        })
    }

    /// Whether they hold `role`.
    pub fn is(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether they run the operation of their programs (supervisor or site
    /// leader): the operations page and the roster.
    pub fn leads(&self) -> bool {
        self.is(Role::Supervisor) || self.is(Role::SiteLeader)
    }

    /// Whether they may see the cases of `program_id`.
    pub fn sees(&self, program_id: &str) -> bool {
        self.programs.iter().any(|p| p == program_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_come_from_tags_and_ids_must_be_plain() {
        assert_eq!(Language::from_tag("es-MX"), Some(Language::Es));
        assert_eq!(Language::from_tag("EN"), Some(Language::En));
        assert_eq!(Language::from_tag("fr"), None);
        assert!(User::new("carla", "Carla", vec![], vec![], Language::En).is_some());
        assert!(User::new("carla/../x", "C", vec![], vec![], Language::En).is_none());
        assert!(User::new("", "C", vec![], vec![], Language::En).is_none());
    }
}
