//! The HTTP API's request and response bodies, shared by the server (`api`) and the client
//! (`cli`), so both sides agree on one type per body and the OpenAPI document describes both.
//!
//! States and kinds that travel as strings are enums here, serialised to the same strings the
//! `policy` crate and the database use.

pub mod applications;
pub mod catalog;
pub mod datasets;
pub mod egress;
pub mod errors;
pub mod extension;
pub mod ingress;
pub mod projects;
pub mod sandboxes;
pub mod system;

/// The schema's pattern for a text that must not be blank: at least one character that is not
/// white space as the gateway trims it (Unicode's White_Space, as `str::trim`), spelt out so
/// that every regex dialect reading the document (ECMA, Python, Rust) agrees on it. The
/// attributes say `\S`; the served document says this (`api::document`).
pub const NOT_BLANK: &str =
    r"[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// The page of a list: its size and where it starts. Every list takes these, and answers with
/// the cursor of its next page in the `x-next-cursor` header when there is one.
#[derive(serde::Serialize, serde::Deserialize, utoipa::IntoParams, Default, Debug, Clone)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many (default 100; fewer than 1 counts as 1, more than 1000 as 1000).
    pub limit: Option<i64>,
    /// Where the page starts: the `x-next-cursor` of the page before. A cursor this list did
    /// not give out is refused 400 `bad_filter`.
    #[param(max_length = 512, pattern = r"^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// A string that names no value of a wire enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

/// An optional count that may arrive as a number without a fractional part (`60.0`): JSON and
/// JSON Schema count it as an integer, serde's integers do not.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    use serde::Deserialize as _;
    use serde::de::Error as _;
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Number {
        Integer(u64),
        Float(f64),
    }
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(Number::Integer(n)) => Ok(Some(n)),
        Some(Number::Float(f)) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => {
            Ok(Some(f as u64))
        }
        Some(Number::Float(f)) => Err(D::Error::custom(format!(
            "{f} is not a whole number of seconds"
        ))),
    }
}

/// A fieldless enum that travels as a snake_case string: `as_str`, `Display`, `FromStr`,
/// serde and an OpenAPI schema listing every value.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident: $what:literal { $($(#[$vmeta:meta])* $variant:ident = $s:literal,)+ }) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
            utoipa::ToSchema,
        )]
        // `rename_all` rather than a rename per variant: utoipa does not see a literal passed
        // through this macro. `as_str` must be the same string (see the tests).
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::wire::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err($crate::wire::UnknownValue {
                        what: $what,
                        value: other.to_owned(),
                    }),
                }
            }
        }
    };
}
pub(crate) use wire_enum;

/// Converts between a wire enum and the `policy` enum of the same values, both ways.
macro_rules! same_values {
    ($wire:ident <=> $policy:path { $($variant:ident),+ $(,)? }) => {
        impl From<$policy> for $wire {
            fn from(v: $policy) -> Self {
                use $policy as P;
                match v {
                    $(P::$variant => $wire::$variant,)+
                }
            }
        }

        impl From<$wire> for $policy {
            fn from(v: $wire) -> Self {
                use $policy as P;
                match v {
                    $($wire::$variant => P::$variant,)+
                }
            }
        }
    };
}
pub(crate) use same_values;

#[cfg(test)]
mod tests {
    use super::applications::*;
    use super::projects::Role;
    use super::sandboxes::*;

    /// `NOT_BLANK` excludes exactly the characters `str::trim` removes.
    #[test]
    fn not_blank_is_what_trim_leaves() {
        let class = super::NOT_BLANK
            .strip_prefix("[^")
            .and_then(|c| c.strip_suffix(']'))
            .unwrap();
        let mut chars = Vec::new();
        let mut rest = class;
        while !rest.is_empty() {
            let one = |r: &str| -> (char, usize) {
                match r.strip_prefix('\\') {
                    Some(e) if e.starts_with('u') => {
                        let n = u32::from_str_radix(&e[1..5], 16).unwrap();
                        (char::from_u32(n).unwrap(), 6)
                    }
                    Some(e) if e.starts_with('t') => ('\t', 2),
                    Some(e) if e.starts_with('r') => ('\r', 2),
                    Some(e) => panic!("unexpected escape {e}"),
                    None => (r.chars().next().unwrap(), 1),
                }
            };
            let (lo, n) = one(rest);
            rest = &rest[n..];
            if let Some(r) = rest.strip_prefix('-') {
                let (hi, n) = one(r);
                rest = &r[n..];
                chars.extend(lo..=hi);
            } else {
                chars.push(lo);
            }
        }
        let trimmed: Vec<char> = (char::MIN..=char::MAX)
            .filter(|c| c.to_string().trim().is_empty())
            .collect();
        assert_eq!(chars, trimmed);
    }

    /// Every wire value is the string `policy` (and so the database) uses for it.
    #[test]
    fn wire_enums_carry_policy_strings() {
        for k in ApplicationKind::ALL {
            assert_eq!(k.as_str(), policy::review::Kind::from(*k).as_str());
        }
        for s in ApplicationState::ALL {
            assert_eq!(s.as_str(), policy::review::State::from(*s).as_str());
        }
        for c in DecisionChoice::ALL {
            assert_eq!(c.as_str(), policy::review::Choice::from(*c).as_str());
        }
        for r in Role::ALL {
            assert_eq!(r.as_str(), policy::roles::Role::from(*r).as_str());
        }
        for c in super::datasets::Category::ALL {
            assert_eq!(c.as_str(), policy::dmp::Category::from(*c).as_str());
        }
    }

    /// Each value travels (serde, the OpenAPI schema) as the string `as_str` gives and
    /// `FromStr` takes.
    #[test]
    fn wire_enums_travel_as_their_strings() {
        fn check<T>(all: &[T])
        where
            T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + serde::Serialize,
            T: std::str::FromStr + utoipa::ToSchema + serde::de::DeserializeOwned,
            <T as std::str::FromStr>::Err: std::fmt::Debug,
        {
            let schema = serde_json::to_value(T::schema()).unwrap();
            for v in all {
                let s = v.to_string();
                assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(s));
                assert_eq!(
                    serde_json::from_value::<T>(serde_json::json!(s)).unwrap(),
                    *v
                );
                assert_eq!(s.parse::<T>().unwrap(), *v);
                assert!(
                    schema["enum"]
                        .as_array()
                        .unwrap()
                        .contains(&serde_json::json!(s))
                );
            }
        }
        check(ApplicationKind::ALL);
        check(NewApplicationKind::ALL);
        check(ApplicationState::ALL);
        check(DecisionChoice::ALL);
        check(AttachmentKind::ALL);
        check(Role::ALL);
        check(super::projects::ProjectRole::ALL);
        check(RunState::ALL);
        check(RunOutcome::ALL);
        check(SandboxState::ALL);
        check(super::datasets::Category::ALL);
        check(super::datasets::DatasetState::ALL);
        check(super::datasets::DmpFormat::ALL);
        check(super::ingress::CheckOutcome::ALL);
        check(super::egress::ReleaseState::ALL);
        check(super::system::HealthStatus::ALL);
        check(super::errors::ErrorCode::ALL);
    }
}
