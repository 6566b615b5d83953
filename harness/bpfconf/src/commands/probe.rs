//! `bpfconf probe`: the running kernel's program types, map types, helpers and kfuncs.

use std::process::ExitCode;

use anyhow::Result;

pub fn run(json: bool) -> Result<ExitCode> {
    let features = features::Features::probe();
    if json {
        println!("{}", serde_json::to_string_pretty(&features)?);
    } else {
        print!("{}", features.table());
    }
    Ok(ExitCode::SUCCESS)
}
