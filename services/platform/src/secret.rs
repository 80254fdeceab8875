//! Secrets (tokens, keys, passwords) as their own type: its `Debug` prints
//! `[REDACTED]`, so a configuration or a client can derive `Debug` and never
//! show one, and reading the value takes a visible `expose_secret()`.

pub use secrecy::{ExposeSecret, SecretString};
