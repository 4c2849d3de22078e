//! Human-facing reports: terminal tables (and later JSON and pictures).

pub mod table;
