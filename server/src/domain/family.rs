//! Families: pseudonymous records of members by role and age band, with one
//! current contact person. No names, no BSN, no free text about a member.

use std::time::SystemTime;

use samenop_proto::v1;
use uuid::Uuid;

use super::{InvalidInput, Oin, ProfessionalId};

/// The most members one family may have.
pub(crate) const MEMBERS_MAX: usize = 20;

super::ids::uuid_id!(
    /// A family's pseudonymous id: a random UUID (v4), so it carries no time.
    FamilyId
);
super::ids::uuid_id!(
    /// A member's pseudonymous id, unique within the family.
    MemberId
);

impl FamilyId {
    /// A new random id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }
}

impl MemberId {
    /// A new random id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }
}

/// A member's role in the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    /// A parent or carer.
    ParentOrCarer,
    /// A child.
    Child,
    /// Another member of the household.
    Other,
}

impl MemberRole {
    /// Parses a role from its wire number.
    ///
    /// # Errors
    /// [`InvalidInput::BadEnum`] for an unknown number or the unspecified value.
    pub fn parse(field: &'static str, value: i32) -> Result<Self, InvalidInput> {
        match v1::FamilyMemberRole::try_from(value) {
            Ok(v1::FamilyMemberRole::ParentOrCarer) => Ok(MemberRole::ParentOrCarer),
            Ok(v1::FamilyMemberRole::Child) => Ok(MemberRole::Child),
            Ok(v1::FamilyMemberRole::Other) => Ok(MemberRole::Other),
            Ok(v1::FamilyMemberRole::Unspecified) | Err(_) => {
                Err(InvalidInput::BadEnum { field, value })
            }
        }
    }

    /// The role's wire value.
    pub fn to_proto(self) -> v1::FamilyMemberRole {
        match self {
            MemberRole::ParentOrCarer => v1::FamilyMemberRole::ParentOrCarer,
            MemberRole::Child => v1::FamilyMemberRole::Child,
            MemberRole::Other => v1::FamilyMemberRole::Other,
        }
    }
}

/// An age band: it decides who must consent for a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AgeBand {
    /// Younger than 12.
    Under12,
    /// 12 to 15.
    From12To15,
    /// 16 or older.
    From16,
}

impl AgeBand {
    /// Parses a band from its wire number.
    ///
    /// # Errors
    /// [`InvalidInput::BadEnum`] for an unknown number or the unspecified value.
    pub fn parse(field: &'static str, value: i32) -> Result<Self, InvalidInput> {
        match v1::AgeBand::try_from(value) {
            Ok(v1::AgeBand::Under12) => Ok(AgeBand::Under12),
            Ok(v1::AgeBand::From12To15) => Ok(AgeBand::From12To15),
            Ok(v1::AgeBand::From16) => Ok(AgeBand::From16),
            Ok(v1::AgeBand::Unspecified) | Err(_) => Err(InvalidInput::BadEnum { field, value }),
        }
    }

    /// The band's wire value.
    pub fn to_proto(self) -> v1::AgeBand {
        match self {
            AgeBand::Under12 => v1::AgeBand::Under12,
            AgeBand::From12To15 => v1::AgeBand::From12To15,
            AgeBand::From16 => v1::AgeBand::From16,
        }
    }

    /// The band of someone `years` old.
    fn of_age(years: i32) -> Self {
        match years {
            ..12 => AgeBand::Under12,
            12..16 => AgeBand::From12To15,
            _ => AgeBand::From16,
        }
    }

    /// How the band reads in a message.
    pub fn describe(self) -> &'static str {
        match self {
            AgeBand::Under12 => "under 12",
            AgeBand::From12To15 => "12 to 15",
            AgeBand::From16 => "16 or older",
        }
    }
}

/// A child's month and year of birth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthMonth {
    /// The year.
    pub year: i32,
    /// The month, 1 to 12.
    pub month: u8,
}

impl BirthMonth {
    /// Parses a birth month: a real month, not after `now`.
    ///
    /// # Errors
    /// [`InvalidInput::Malformed`] for a month outside 1 to 12, a year before
    /// 1900, or a month after the current one.
    pub fn parse(
        field: &'static str,
        raw: &v1::BirthMonth,
        now: SystemTime,
    ) -> Result<Self, InvalidInput> {
        let month = u8::try_from(raw.month)
            .ok()
            .filter(|m| (1..=12).contains(m))
            .ok_or(InvalidInput::Malformed {
                field,
                problem: "month must be 1 to 12",
            })?;
        let year =
            i32::try_from(raw.year)
                .ok()
                .filter(|y| *y >= 1900)
                .ok_or(InvalidInput::Malformed {
                    field,
                    problem: "year must be 1900 or later",
                })?;
        let (now_year, now_month) = year_month(now);
        if (year, month) > (now_year, now_month) {
            return Err(InvalidInput::Malformed {
                field,
                problem: "lies in the future",
            });
        }
        Ok(BirthMonth { year, month })
    }

    /// Full years of age at `now`. Without a day of birth, a birthday is
    /// counted from the first day of the month after the birth month, so a
    /// child is never taken to be older than they may be.
    pub fn age_at(self, now: SystemTime) -> i32 {
        let (year, month) = year_month(now);
        let years = year - self.year;
        if month > self.month { years } else { years - 1 }
    }
}

/// The calendar year and month (UTC) of a time.
fn year_month(time: SystemTime) -> (i32, u8) {
    let date = time::OffsetDateTime::from(time);
    (date.year(), u8::from(date.month()))
}

/// How a member's age band is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    /// A band given at registration; it does not move.
    Band(AgeBand),
    /// A child's birth month: the band follows the child's age.
    Born(BirthMonth),
}

/// One member of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The member's pseudonymous id.
    pub id: MemberId,
    /// Their role.
    pub role: MemberRole,
    /// Their age, as given.
    pub age: Age,
}

impl Member {
    /// The member's age band at `now`.
    pub fn band_at(&self, now: SystemTime) -> AgeBand {
        match self.age {
            Age::Band(band) => band,
            Age::Born(birth) => AgeBand::of_age(birth.age_at(now)),
        }
    }
}

/// One period of a professional as the family's contact person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactTerm {
    /// The contact person.
    pub professional: ProfessionalId,
    /// Their organisation.
    pub organisation: Oin,
    /// Since when.
    pub since: SystemTime,
    /// Until when; `None` for the current one.
    pub until: Option<SystemTime>,
}

/// A registered family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Its pseudonymous id.
    pub id: FamilyId,
    /// Its members, in registration order.
    pub members: Vec<Member>,
    /// The current contact person.
    pub contact: ContactTerm,
    /// Earlier contact persons, oldest first.
    pub previous: Vec<ContactTerm>,
    /// When it was registered.
    pub registered_at: SystemTime,
}

impl Family {
    /// Parses a registration request into a new family led by `contact`.
    ///
    /// # Errors
    /// [`InvalidInput`] naming the first member field that is wrong.
    pub fn register(
        raw: &v1::RegisterFamilyRequest,
        contact: (ProfessionalId, Oin),
        now: SystemTime,
    ) -> Result<Self, InvalidInput> {
        if raw.members.is_empty() {
            return Err(InvalidInput::Missing { field: "members" });
        }
        if raw.members.len() > MEMBERS_MAX {
            return Err(InvalidInput::TooLong {
                field: "members",
                max: MEMBERS_MAX,
                unit: "items",
            });
        }
        let members = raw
            .members
            .iter()
            .map(|member| parse_member(member, now))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Family {
            id: FamilyId::generate(),
            members,
            contact: ContactTerm {
                professional: contact.0,
                organisation: contact.1,
                since: now,
                until: None,
            },
            previous: Vec::new(),
            registered_at: now,
        })
    }

    /// The member with `id`, if it belongs to the family.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Makes `to` the contact person from `now`; the current one becomes
    /// a previous one.
    pub fn hand_over(&mut self, to: (ProfessionalId, Oin), now: SystemTime) {
        let mut ended = self.contact.clone();
        ended.until = Some(now);
        self.previous.push(ended);
        self.contact = ContactTerm {
            professional: to.0,
            organisation: to.1,
            since: now,
            until: None,
        };
    }
}

fn parse_member(raw: &v1::FamilyMember, now: SystemTime) -> Result<Member, InvalidInput> {
    if !raw.member_id.is_empty() {
        return Err(InvalidInput::Inconsistent(
            "members.member_id must be empty: the server assigns it",
        ));
    }
    let role = MemberRole::parse("members.role", raw.role)?;
    let age = match (&raw.birth_month, raw.age_band) {
        (Some(_), _) if role != MemberRole::Child => {
            return Err(InvalidInput::Inconsistent(
                "members.birth_month is only for a member with FAMILY_MEMBER_ROLE_CHILD",
            ));
        }
        (Some(birth), band) => {
            let birth = BirthMonth::parse("members.birth_month", birth, now)?;
            let derived = AgeBand::of_age(birth.age_at(now));
            if band != 0 && AgeBand::parse("members.age_band", band)? != derived {
                return Err(InvalidInput::Inconsistent(
                    "members.age_band does not match members.birth_month; give one of them",
                ));
            }
            Age::Born(birth)
        }
        (None, 0) => {
            return Err(InvalidInput::Missing {
                field: "members.age_band",
            });
        }
        (None, band) => Age::Band(AgeBand::parse("members.age_band", band)?),
    };
    Ok(Member {
        id: MemberId::generate(),
        role,
        age,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(year: i32, month: u8) -> SystemTime {
        let date = time::Date::from_calendar_date(year, time::Month::try_from(month).unwrap(), 15)
            .unwrap();
        let seconds = date.midnight().assume_utc().unix_timestamp();
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap())
    }

    #[test]
    fn the_band_moves_after_the_birth_month() {
        let born = BirthMonth {
            year: 2014,
            month: 5,
        };
        let child = Member {
            id: MemberId::generate(),
            role: MemberRole::Child,
            age: Age::Born(born),
        };
        assert_eq!(child.band_at(at(2026, 5)), AgeBand::Under12);
        assert_eq!(child.band_at(at(2026, 6)), AgeBand::From12To15);
        assert_eq!(child.band_at(at(2030, 5)), AgeBand::From12To15);
        assert_eq!(child.band_at(at(2030, 6)), AgeBand::From16);
    }

    #[test]
    fn birth_months_are_checked() {
        let now = at(2026, 11);
        let parse = |year, month| BirthMonth::parse("b", &v1::BirthMonth { year, month }, now);
        assert!(parse(2020, 0).is_err());
        assert!(parse(2020, 13).is_err());
        assert!(parse(1800, 1).is_err());
        assert!(parse(2026, 12).is_err());
        assert!(parse(2026, 11).is_ok());
    }

    #[test]
    fn members_need_a_role_and_an_age() {
        let now = at(2026, 11);
        let member = |role, band, birth: Option<(u32, u32)>| v1::FamilyMember {
            member_id: String::new(),
            role,
            age_band: band,
            birth_month: birth.map(|(year, month)| v1::BirthMonth { year, month }),
        };
        let register = |members| {
            Family::register(
                &v1::RegisterFamilyRequest { members },
                (
                    ProfessionalId::generate(),
                    Oin::parse("o", "00000099000000000001").unwrap(),
                ),
                now,
            )
        };
        assert!(register(vec![member(1, 3, None)]).is_ok());
        assert!(register(vec![member(2, 0, Some((2015, 3)))]).is_ok());
        assert!(register(vec![]).is_err());
        assert!(register(vec![member(0, 3, None)]).is_err());
        assert!(register(vec![member(1, 0, None)]).is_err());
        assert!(register(vec![member(1, 9, None)]).is_err());
        assert!(
            register(vec![member(1, 3, Some((1990, 1)))]).is_err(),
            "birth month only for children"
        );
        assert!(
            register(vec![member(2, 3, Some((2015, 3)))]).is_err(),
            "band and birth month disagree"
        );
        assert!(
            register(vec![member(2, 1, Some((2015, 3)))]).is_ok(),
            "band and birth month agree"
        );
        assert!(register(vec![member(1, 3, None); 21]).is_err());
    }
}
