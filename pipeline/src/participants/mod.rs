//! The saga participants, each one a topology on the operators runtime.
