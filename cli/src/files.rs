//! File helpers: private files created 0600 from the first byte, atomic replacement, and reads
//! whose errors name the file but never show its content.

use std::fs::{self, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::outcome::CliError;

/// Reads a UTF-8 text file; `-` reads stdin.
pub fn read_text(path: &str, what: &str) -> Result<String, CliError> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::failed(format!("cannot read {what} from stdin: {e}")))?;
        return Ok(s);
    }
    let bytes = fs::read(path)
        .map_err(|e| CliError::failed(format!("cannot read {what} {path}: {}", io_reason(&e))))?;
    String::from_utf8(bytes)
        .map_err(|_| CliError::failed(format!("{what} {path} is not UTF-8 text")))
}

/// A short reason for an I/O error (`No such file or directory`), without the OS error code.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s.get(..i).unwrap_or(&s).to_string(),
        None => s,
    }
}

/// Whether a file is readable or writable by group or others.
pub fn too_open(path: &str) -> bool {
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

/// Creates `dir` (and parents) if missing; new directories get mode 0700.
pub fn ensure_dir(dir: &Path) -> Result<(), CliError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            CliError::failed(format!(
                "cannot create directory {}: {}",
                dir.display(),
                io_reason(&e)
            ))
        })
}

/// A temporary name beside `path` (same directory, so a rename is atomic).
fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    path.with_file_name(format!(".{name}.{}-{nanos}.tmp", std::process::id()))
}

/// Writes `data` to a new file created with `mode` (never more open than that, not even for an
/// instant), then renames it over `path`. With `replace: false`, an existing `path` is an error.
pub fn write_file(path: &Path, data: &[u8], mode: u32, replace: bool) -> Result<(), CliError> {
    let shown = path.display();
    if !replace && fs::symlink_metadata(path).is_ok() {
        return Err(CliError::failed(format!(
            "{shown} already exists (not overwritten; pass --force to replace it)"
        )));
    }
    // Without replace, the file is created in place (create_new fails if it exists: a key is
    // never clobbered); with replace, a temporary file beside it is renamed over it.
    let target = if replace {
        temp_beside(path)
    } else {
        path.to_path_buf()
    };
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&target)?;
        f.write_all(data)?;
        f.sync_all()?;
        // The umask may have narrowed `mode`; a public file should still be readable.
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
        if replace {
            fs::rename(&target, path)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        if replace || e.kind() != std::io::ErrorKind::AlreadyExists {
            let _ = fs::remove_file(&target);
        }
        return Err(CliError::failed(format!(
            "cannot write {shown}: {}",
            io_reason(&e)
        )));
    }
    Ok(())
}

/// The mode of an existing file (to keep it when replacing), else `default`.
pub fn mode_or(path: &Path, default: u32) -> u32 {
    fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(default)
}
