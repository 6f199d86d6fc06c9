//! Output directories written all at once: a reader sees the old directory or the new one,
//! never a mix, and a kill at any moment leaves one of the two, both valid.
//!
//! The new contents go to a hidden sibling (`.NAME.tmp-PID-N`), every file and the directory
//! are fsynced, then the sibling takes the name: by `renameat2(RENAME_EXCHANGE)` on Linux (one
//! atomic swap; the old files are then unlinked, never truncated, so a process that still maps
//! them keeps valid data), else by two renames. An output that is, contains, or lies inside a
//! protected input directory (the FP32 model it came from) is refused before anything is
//! written, and so is replacing a directory that holds files osq did not write.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{ModelError, Result};

/// Writes directory `dir` atomically: `fill` writes the files into the (empty) directory it
/// is given. `protect` are input directories the output must not touch; `ours` are the file
/// names a previous version of `dir` may hold (anything else makes replacing it an error).
pub fn write_dir(
    dir: &Path,
    protect: &[&Path],
    ours: &[&str],
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    check_outside(dir, protect)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dir
        .file_name()
        .ok_or_else(|| {
            ModelError::Input(format!(
                "{}: not a directory name to write to",
                dir.display()
            ))
        })?
        .to_string_lossy()
        .into_owned();
    std::fs::create_dir_all(&parent).map_err(|e| ModelError::io(&parent, e))?;
    remove_stale_siblings(&parent, &name);
    let exists = dir.exists();
    if exists {
        check_replaceable(dir, ours)?;
    }
    static N: AtomicUsize = AtomicUsize::new(0);
    let tmp = parent.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    let res = fill(&tmp)
        .and_then(|()| sync_dir_tree(&tmp))
        .and_then(|()| {
            if exists {
                swap_in(&tmp, dir)
            } else {
                std::fs::rename(&tmp, dir).map_err(|e| ModelError::io(dir, e))
            }
        });
    if res.is_err() {
        std::fs::remove_dir_all(&tmp).ok();
        return res;
    }
    sync_path(&parent).ok();
    Ok(())
}

/// Removes `.NAME.tmp-PID-N` siblings left by writers that were killed (their PID is gone;
/// Linux only, best effort).
fn remove_stale_siblings(parent: &Path, name: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = f.strip_prefix(&prefix) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty()
            && pid.chars().all(|c| c.is_ascii_digit())
            && !Path::new("/proc").join(pid).exists()
        {
            std::fs::remove_dir_all(e.path()).ok();
        }
    }
}

/// Refuses an output that is, contains or lies inside a protected directory (symlinks
/// resolved), so that writing it can never replace or truncate an input.
pub fn check_outside(dir: &Path, protect: &[&Path]) -> Result<()> {
    let out = resolve(dir);
    for p in protect {
        let Ok(inp) = p.canonicalize() else { continue };
        if out == inp || out.starts_with(&inp) || inp.starts_with(&out) {
            return Err(ModelError::Input(format!(
                "output {} is (or overlaps) the input directory {}: choose another output directory",
                dir.display(),
                p.display()
            )));
        }
    }
    Ok(())
}

/// `dir` with symlinks resolved as far as it exists (the rest appended).
fn resolve(dir: &Path) -> PathBuf {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(dir)
    };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(p), Some(f)) => {
                rest.push(f.to_os_string());
                cur = p;
            }
            _ => return abs,
        }
    }
}

fn check_replaceable(dir: &Path, ours: &[&str]) -> Result<()> {
    if !dir.is_dir() {
        return Err(ModelError::Input(format!(
            "output {} exists and is not a directory",
            dir.display()
        )));
    }
    for entry in std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))? {
        let entry = entry.map_err(|e| ModelError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !ours.contains(&name.as_str()) {
            return Err(ModelError::Input(format!(
                "output {} holds {name}, which osq did not write: refusing to replace the directory \
                 (move that file or choose another output directory)",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Puts `tmp` in the place of the existing `dir` and removes the old contents.
fn swap_in(tmp: &Path, dir: &Path) -> Result<()> {
    if exchange(tmp, dir).is_ok() {
        // `tmp` now holds the old directory.
        std::fs::remove_dir_all(tmp).ok();
        return Ok(());
    }
    let old = tmp.with_extension("old");
    std::fs::rename(dir, &old).map_err(|e| ModelError::io(dir, e))?;
    if let Err(e) = std::fs::rename(tmp, dir) {
        std::fs::rename(&old, dir).ok();
        return Err(ModelError::io(dir, e));
    }
    std::fs::remove_dir_all(&old).ok();
    Ok(())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: FFI call with two valid NUL-terminated paths relative to the current directory;
    // renameat2 does not retain the pointers.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

fn sync_path(p: &Path) -> std::io::Result<()> {
    std::fs::File::open(p)?.sync_all()
}

fn sync_dir_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))? {
        let p = entry.map_err(|e| ModelError::io(dir, e))?.path();
        if p.is_dir() {
            sync_dir_tree(&p)?;
        } else {
            sync_path(&p).map_err(|e| ModelError::io(&p, e))?;
        }
    }
    sync_path(dir).map_err(|e| ModelError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> Result<()> {
        std::fs::write(dir.join("a.txt"), text).map_err(|e| ModelError::io(dir, e))
    }

    #[test]
    fn replaces_whole_directories_and_refuses_inputs() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        write_dir(&out, &[], &["a.txt"], |d| write(d, "one")).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "one");
        write_dir(&out, &[], &["a.txt"], |d| write(d, "two")).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "two");
        // a failing writer leaves the old directory and no temporary sibling
        let e = write_dir(&out, &[], &["a.txt"], |_| {
            Err(ModelError::Input("boom".into()))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // the input itself, a directory inside it, one containing it, a symlink to it
        let model = root.path().join("model");
        std::fs::create_dir(&model).unwrap();
        for bad in [model.clone(), model.join("sub"), root.path().to_path_buf()] {
            let e = write_dir(&bad, &[&model], &[], |d| write(d, "x"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("input directory"), "{e}");
        }
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&model, &link).unwrap();
        assert!(write_dir(&link, &[&model], &[], |d| write(d, "x")).is_err());
        // foreign files are never replaced
        std::fs::write(out.join("notes.md"), "mine").unwrap();
        let e = write_dir(&out, &[], &["a.txt"], |d| write(d, "three"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("notes.md"), "{e}");
        assert_eq!(
            std::fs::read_to_string(out.join("notes.md")).unwrap(),
            "mine"
        );
    }
}
