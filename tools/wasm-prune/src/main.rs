//! `wasm-prune`: the post-link step of `scripts/build-wasm`.
//!
//! ```text
//! wasm-prune IN OUT --keep NAME[,NAME...]...   keep these function exports, drop the others
//!                                              and the code only they reached; OUT may be IN
//! wasm-prune --list IN                          print the module's exports, one a line
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasm-prune: {e}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: wasm-prune IN OUT --keep NAME[,NAME...]... | wasm-prune --list IN";

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn run(args: &[String]) -> Result<(), String> {
    if let [flag, path] = args {
        if flag == "--list" {
            for name in wasm_prune::export_names(&read(path)?)? {
                println!("{name}");
            }
            return Ok(());
        }
    }
    let mut paths = Vec::new();
    let mut keep: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--keep" {
            let v = it.next().ok_or("--keep needs a value")?;
            keep.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        } else if a.starts_with("--") {
            return Err(format!("unknown option {a}\n{USAGE}"));
        } else {
            paths.push(a.as_str());
        }
    }
    let [input, output] = paths[..] else {
        return Err(USAGE.into());
    };
    if keep.is_empty() {
        return Err(format!("--keep is required\n{USAGE}"));
    }
    let wasm = read(input)?;
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    let r = wasm_prune::prune(&wasm, &keep).map_err(|e| format!("{input}: {e}"))?;
    // Write beside the output, then rename: OUT may be IN, and a reader never sees half a file.
    let tmp = format!("{output}.prune-tmp");
    std::fs::write(&tmp, &r.wasm).map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, output).map_err(|e| format!("{output}: {e}"))?;
    println!(
        "wasm-prune: {} → {} bytes; function exports {} → {} (removed: {}); functions {} → {}, function imports {} → {}{}",
        wasm.len(),
        r.wasm.len(),
        r.kept_exports.len() + r.removed_exports.len(),
        r.kept_exports.len(),
        if r.removed_exports.is_empty() {
            "none".to_string()
        } else {
            r.removed_exports.join(" ")
        },
        r.functions.0,
        r.functions.1,
        r.function_imports.0,
        r.function_imports.1,
        if r.dropped_custom_sections.is_empty() {
            String::new()
        } else {
            format!(
                "; dropped custom sections: {}",
                r.dropped_custom_sections.join(" ")
            )
        },
    );
    Ok(())
}
