//! The version-1 job spec (YAML). Filled in below.
