//! Runtime adapters (being written).
