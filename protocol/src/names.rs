//! Enums whose variants each have one name, the same in MessagePack, JSON, ClickHouse and
//! URLs (a status, an event level, a metric kind, a sort key): the names are written once, in
//! the enum's declaration, and everything else follows from them.

/// Declares an enum whose variants each have one name (`Variant = "name",`), with `ALL`,
/// `as_str`, `from_name`, `names` and `Display`, and the derives every such enum has (`Debug`,
/// `Clone`, `Copy`, `PartialEq`, `Eq`, `Hash`, serde with `rename_all = "snake_case"`, which
/// gives the same names, as [`check_serde_names`] proves in each enum's tests, and utoipa's
/// `ToSchema` where the calling crate's `openapi` feature is on). A caller adds `Default`.
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Every variant's name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// Its name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant with exactly this name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The names, for messages: `a, b or c`.
            pub fn names() -> String {
                $crate::names::one_of(Self::NAMES)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// `a, b or c`.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [only] => only.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Whether serde writes every variant as its name (an enum's derives must agree with its
/// declared names).
pub fn check_serde_names<T: serde::Serialize + Copy>(
    all: &[T],
    as_str: fn(T) -> &'static str,
) -> Result<(), String> {
    for &variant in all {
        let written = serde_json::to_value(variant).map_err(|e| e.to_string())?;
        if written != as_str(variant) {
            return Err(format!(
                "serde writes {written}, its name is {:?}",
                as_str(variant)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_listed_for_messages() {
        assert_eq!(super::one_of(&["a", "b", "c"]), "a, b or c");
        assert_eq!(super::one_of(&["a"]), "a");
    }
}
