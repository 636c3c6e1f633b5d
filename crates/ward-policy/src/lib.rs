//! ward-policy
