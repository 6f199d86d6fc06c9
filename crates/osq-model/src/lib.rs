//! osq model.
