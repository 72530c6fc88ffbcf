//! Element types that NNEF tensor files can hold, with their `.dat` item codes.

use crate::error::{Error, Result};

/// An element type of a dense tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE half.
    F16,
    /// IEEE single.
    F32,
    /// IEEE double.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Boolean, one byte per element in memory.
    Bool,
}

/// Which integer item codes a `.dat` file is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The Khronos tools' codes: unsigned = 1, signed = 4, booleans packed one bit per element.
    Khronos,
    /// tract's codes: unsigned = 2, signed = 3, booleans one byte per element.
    Tract,
}

impl Flavor {
    /// Parses `"khronos"` or `"tract"`.
    pub fn parse(s: &str) -> Result<Flavor> {
        match s {
            "khronos" => Ok(Flavor::Khronos),
            "tract" => Ok(Flavor::Tract),
            _ => Err(Error::InvalidArgument(format!(
                "unknown .dat flavor {s:?}: use \"tract\" or \"khronos\""
            ))),
        }
    }
}

/// All dense dtypes, in a fixed order (handy for tests).
pub const ALL_DTYPES: [DType; 12] = [
    DType::F16,
    DType::F32,
    DType::F64,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::Bool,
];

impl DType {
    /// Size of one element in memory, in bytes.
    pub fn size_of(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// The short name used across the package (`"f32"`, `"i64"`, `"bool"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::U16 => "u16",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::Bool => "bool",
        }
    }

    /// Parses a short name as returned by [`DType::name`].
    pub fn parse(s: &str) -> Option<DType> {
        ALL_DTYPES.iter().copied().find(|d| d.name() == s)
    }

    /// Whether this is a floating point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::F32 | DType::F64)
    }

    /// `(item_type, bits_per_item)` written in a `.dat` header with vendor 0.
    pub fn item_code(self, flavor: Flavor) -> (u16, u32) {
        let bits = (self.size_of() * 8) as u32;
        let (unsigned, signed) = match flavor {
            Flavor::Khronos => (1, 4),
            Flavor::Tract => (2, 3),
        };
        match self {
            DType::F16 | DType::F32 | DType::F64 => (0, bits),
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => (unsigned, bits),
            DType::I8 | DType::I16 | DType::I32 | DType::I64 => (signed, bits),
            DType::Bool => match flavor {
                Flavor::Khronos => (5, 1),
                Flavor::Tract => (5, 8),
            },
        }
    }

    /// The dtype a vendor-0 `(item_type, bits_per_item)` pair stands for, in either flavor.
    pub fn from_item_code(item_type: u16, bits: u32) -> Option<DType> {
        Some(match (item_type, bits) {
            (0, 16) => DType::F16,
            (0, 32) => DType::F32,
            (0, 64) => DType::F64,
            (1 | 2, 8) => DType::U8,
            (1 | 2, 16) => DType::U16,
            (1 | 2, 32) => DType::U32,
            (1 | 2, 64) => DType::U64,
            (3 | 4, 8) => DType::I8,
            (3 | 4, 16) => DType::I16,
            (3 | 4, 32) => DType::I32,
            (3 | 4, 64) => DType::I64,
            (5, 1 | 8) => DType::Bool,
            _ => return None,
        })
    }

    /// The matching tract datum type.
    pub fn to_tract(self) -> tract_nnef::prelude::DatumType {
        use tract_nnef::prelude::DatumType as D;
        match self {
            DType::F16 => D::F16,
            DType::F32 => D::F32,
            DType::F64 => D::F64,
            DType::I8 => D::I8,
            DType::I16 => D::I16,
            DType::I32 => D::I32,
            DType::I64 => D::I64,
            DType::U8 => D::U8,
            DType::U16 => D::U16,
            DType::U32 => D::U32,
            DType::U64 => D::U64,
            DType::Bool => D::Bool,
        }
    }

    /// The dtype of a tract datum type, when it is a plain one.
    pub fn from_tract(dt: tract_nnef::prelude::DatumType) -> Option<DType> {
        ALL_DTYPES.iter().copied().find(|d| d.to_tract() == dt)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
