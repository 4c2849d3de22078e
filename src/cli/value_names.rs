//! Enums of unit variants that a flag (or a checkpoint's field) names by one word each:
//! [`value_names!`] writes their `FromStr` and `Display` from one list, so the words, the
//! parsing and the error that lists them cannot drift apart.

/// "a", "a or b", "a, b or c": the words a bad value's error offers.
pub fn alternatives(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [only] => only.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// `value_names!(Type, "--flag", [Variant => "word", ...])`: `FromStr` (an unknown word is
/// `unknown --flag 'x' (expected a, b or c)`) and `Display` (the variant's word).
#[macro_export]
macro_rules! value_names {
    ($type:ty, $what:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl std::str::FromStr for $type {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> anyhow::Result<Self> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    other => anyhow::bail!(
                        "unknown {} '{other}' (expected {})",
                        $what,
                        $crate::cli::value_names::alternatives(&[$($name),+])
                    ),
                }
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $name,)+
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Shade {
        Light,
        Dark,
        Grey,
    }
    crate::value_names!(Shade, "--shade", [Light => "light", Dark => "dark", Grey => "grey"]);

    #[test]
    fn words_parse_print_and_name_the_alternatives() {
        assert_eq!("dark".parse::<Shade>().unwrap(), Shade::Dark);
        assert_eq!(Shade::Grey.to_string(), "grey");
        let err = "blue".parse::<Shade>().unwrap_err().to_string();
        assert_eq!(err, "unknown --shade 'blue' (expected light, dark or grey)");
        assert_eq!(alternatives(&["none", "balanced"]), "none or balanced");
        assert_eq!(alternatives(&["one"]), "one");
    }
}
