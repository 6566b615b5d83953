//! Loading BPF objects (a skeleton, or an object file of one's own) with every program's verifier
//! log captured and parsed into `record::LoadOutcome`: shared by the suite's harness and
//! `bpfconf objects`.

pub mod errno;
pub mod load;
