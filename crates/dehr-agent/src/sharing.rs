//! Sharing (placeholder).
