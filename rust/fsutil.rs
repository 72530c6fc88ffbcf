//! Safe output paths: labels that cannot escape their folder, and files or folders written
//! under a temporary name and renamed into place only once complete.

use std::fs::{self, File};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Checks that a tensor label is a relative path that stays inside its folder.
pub fn validate_label(what: &str, label: &str) -> Result<()> {
    let refuse = |reason: &str| {
        Err(Error::UnsafePath {
            what: what.to_string(),
            label: label.to_string(),
            reason: reason.to_string(),
        })
    };
    if label.is_empty() {
        return refuse("it is empty");
    }
    if label.contains('\0') || label.contains('\\') {
        return refuse("it contains a NUL or a backslash");
    }
    if label.starts_with('/') {
        return refuse("it is absolute; labels are relative to the model folder");
    }
    for part in label.split('/') {
        match part {
            "" => return refuse("it has an empty component ('//' or a trailing '/')"),
            "." | ".." => return refuse("'.' and '..' components could leave the model folder"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks that a member path read from an archive stays inside it.
pub fn validate_member_path(what: &str, path: &Path) -> Result<()> {
    for c in path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => {
                return Err(Error::UnsafePath {
                    what: what.to_string(),
                    label: path.display().to_string(),
                    reason: "archive members must be relative paths without '..'".into(),
                })
            }
        }
    }
    Ok(())
}

/// Checks that `path` can be created: its folder exists, and it does not exist unless
/// `overwrite`.
pub fn check_output_path(path: &Path, overwrite: bool) -> Result<()> {
    let parent = parent_of(path);
    if !parent.is_dir() {
        return Err(Error::MissingParent {
            path: path.to_path_buf(),
            parent,
        });
    }
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(Error::OutputExists {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A sibling temporary name for `path`, unique within this process.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    parent_of(path).join(format!(".{name}.{}-{n}.partial", std::process::id()))
}

/// A file written under a temporary name and moved to its final path by [`AtomicFile::commit`].
/// Dropped without commit, the temporary file is removed.
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Creates the temporary file next to `path` after checking the output path.
    pub fn create(path: &Path, overwrite: bool) -> Result<AtomicFile> {
        check_output_path(path, overwrite)?;
        let temp_path = temp_sibling(path);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(|e| Error::io(&temp_path, e))?;
        Ok(AtomicFile {
            final_path: path.to_path_buf(),
            temp_path,
            file: Some(file),
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file present until commit")
    }

    /// Reserves `len` bytes of disk for the file ahead of writing (as numpy's `tofile` does):
    /// large writes then skip block allocation. A file system without support is left as is.
    pub fn preallocate(&mut self, len: u64) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = self.file().as_raw_fd();
            // SAFETY: `fd` is an open, writable descriptor owned by `self.file`; fallocate only
            // reserves blocks (KEEP_SIZE leaves the file length alone) and its failure is harmless.
            unsafe {
                libc::fallocate(
                    fd,
                    libc::FALLOC_FL_KEEP_SIZE,
                    0,
                    len.min(i64::MAX as u64) as i64,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = len;
    }

    /// The temporary path (for error messages).
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Closes the file and renames it into place.
    pub fn commit(mut self, overwrite: bool) -> Result<()> {
        drop(self.file.take());
        if !overwrite && fs::symlink_metadata(&self.final_path).is_ok() {
            return Err(Error::OutputExists {
                path: self.final_path.clone(),
            });
        }
        fs::rename(&self.temp_path, &self.final_path)
            .map_err(|e| Error::io(&self.final_path, e))?;
        self.temp_path = PathBuf::new();
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp_path.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// A folder filled under a temporary name and moved to its final path by [`AtomicDir::commit`].
/// Dropped without commit, the temporary folder is removed.
pub struct AtomicDir {
    final_path: PathBuf,
    temp_path: PathBuf,
}

impl AtomicDir {
    /// Creates the temporary folder next to `path` after checking the output path.
    pub fn create(path: &Path, overwrite: bool) -> Result<AtomicDir> {
        check_output_path(path, overwrite)?;
        let temp_path = temp_sibling(path);
        fs::create_dir(&temp_path).map_err(|e| Error::io(&temp_path, e))?;
        Ok(AtomicDir {
            final_path: path.to_path_buf(),
            temp_path,
        })
    }

    /// The temporary folder to fill.
    pub fn path(&self) -> &Path {
        &self.temp_path
    }

    /// Moves the folder into place. An existing output (when overwriting) is moved aside first
    /// and deleted only after the new one is in place.
    pub fn commit(mut self, overwrite: bool) -> Result<()> {
        let existing = fs::symlink_metadata(&self.final_path).ok();
        let mut aside = None;
        if let Some(meta) = existing {
            if !overwrite {
                return Err(Error::OutputExists {
                    path: self.final_path.clone(),
                });
            }
            let old = temp_sibling(&self.final_path);
            fs::rename(&self.final_path, &old).map_err(|e| Error::io(&self.final_path, e))?;
            aside = Some((old, meta.is_dir()));
        }
        if let Err(e) = fs::rename(&self.temp_path, &self.final_path) {
            if let Some((old, _)) = &aside {
                let _ = fs::rename(old, &self.final_path);
            }
            return Err(Error::io(&self.final_path, e));
        }
        self.temp_path = PathBuf::new();
        if let Some((old, is_dir)) = aside {
            let removed = if is_dir {
                fs::remove_dir_all(&old)
            } else {
                fs::remove_file(&old)
            };
            removed.map_err(|e| Error::io(&old, e))?;
        }
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.temp_path.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.temp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_that_escape_are_refused() {
        for bad in ["", "/abs", "a/../../b", "..", "a//b", "a/", "./a", "a\\b"] {
            assert!(
                validate_label("t", bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        for good in ["a", "encoder.layers.0.weight", "a/b/c", "a..b"] {
            validate_label("t", good).unwrap();
        }
    }

    #[test]
    fn uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.dat");
        {
            let mut f = AtomicFile::create(&target, false).unwrap();
            use std::io::Write;
            f.file().write_all(b"half").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn existing_output_is_kept_unless_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        fs::write(&target, b"old").unwrap();
        assert!(matches!(
            AtomicFile::create(&target, false),
            Err(Error::OutputExists { .. })
        ));
        let d = AtomicDir::create(&target, true).unwrap();
        fs::write(d.path().join("inner"), b"new").unwrap();
        d.commit(true).unwrap();
        assert_eq!(fs::read(target.join("inner")).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_parent_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("nope").join("x.dat");
        assert!(matches!(
            AtomicFile::create(&target, false),
            Err(Error::MissingParent { .. })
        ));
    }
}
