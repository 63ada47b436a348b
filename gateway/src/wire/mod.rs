//! The HTTP API's request and response bodies, shared by the server (`api`) and the client
//! (`cli`), so both sides agree on one type per body and the OpenAPI document describes both.
//!
//! States and kinds that travel as strings are enums here, serialised to the same strings the
//! `policy` crate and the database use.

pub mod applications;
pub mod errors;
pub mod ingress;
pub mod projects;
pub mod sandboxes;
pub mod system;

/// A string that names no value of a wire enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
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
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $s)] $variant,)+
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
        for s in RunState::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(s.as_str().parse::<RunState>().unwrap(), *s);
        }
        for o in RunOutcome::ALL {
            assert_eq!(o.as_str().parse::<RunOutcome>().unwrap(), *o);
        }
    }
}
