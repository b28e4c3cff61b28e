//! Enums stored by name in TEXT columns (checked by the schema) on every
//! backend. (sqlx's derive would make them a PostgreSQL enum type of their
//! own.)
//!
//! A variant's name is its identifier in snake case, and the rule is written
//! once, here: [`text_enum!`] gives an enum serde's names and strum's
//! (`IntoStaticStr` to encode, `EnumString` to decode, `VariantArray` for the
//! list) from the same `snake_case`; a test checks that they agree.

/// Defines an enum stored by name (`text_enum! { /// doc pub enum Name {
/// … } }`): serde, utoipa and strum derives with snake-case names, then what
/// `text_enum!(impl Name)` gives. `text_enum!(impl Name)` alone, for an enum
/// defined elsewhere with an `IntoStaticStr` and a `FromStr` of its own:
/// sqlx's `Type`, `Encode` and `Decode` for every database whose `str` is a
/// type, and `as_str`, the name stored and shown.
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            utoipa::ToSchema,
            strum::EnumString,
            strum::IntoStaticStr,
            strum::VariantArray,
        )]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        $vis enum $name { $($body)* }

        text_enum!(impl $name);
    };
    (impl $ty:ty) => {
        impl $ty {
            /// The name stored in the database and shown by the API.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $ty
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut DB::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let name = <&str as sqlx::Decode<'r, DB>>::decode(value)?;
                name.parse::<$ty>().map_err(|_| {
                    format!("unknown {} `{name}` in the database", stringify!($ty)).into()
                })
            }
        }
    };
}
pub(super) use text_enum;

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use crate::data::DatasetFormat;
    use crate::store::{EventKind, JobStatus, Level, Split};

    /// serde's name of each variant is its stored name, and parses back.
    fn same_names<T>()
    where
        T: VariantArray + Copy + serde::Serialize + std::str::FromStr + PartialEq + std::fmt::Debug,
        &'static str: From<T>,
    {
        for &v in T::VARIANTS {
            let name: &'static str = v.into();
            assert_eq!(serde_json::to_value(v).unwrap(), name, "{v:?}");
            assert_eq!(name.parse::<T>().ok(), Some(v), "{name}");
        }
    }

    #[test]
    fn serde_and_the_database_use_one_name_per_variant() {
        same_names::<JobStatus>();
        same_names::<Split>();
        same_names::<Level>();
        same_names::<EventKind>();
        same_names::<DatasetFormat>();
    }
}
