//! The command line's own modules (not part of the library).

pub mod plot;
pub mod translate;
pub mod vit;
