//! Human-facing reports: terminal tables, classification reports (text, JSON, CSV) and
//! pictures.

pub mod classification;
pub mod plots;
pub mod table;
