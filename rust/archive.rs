//! NNEF model archives: a folder, a `.tar` or a `.tgz` holding `graph.nnef`, an optional
//! `graph.quant` and one `.dat` per tensor. Written streamed and atomically.

use std::fs::File;
use std::io::{BufWriter, Cursor, Read, Write};
use std::path::Path;

use flate2::{read::GzDecoder, write::GzEncoder, Compression};

use crate::dat::{write_dats, DatOptions, DatSource};
use crate::error::{Error, Result};
use crate::fsutil::{validate_label, validate_member_path, AtomicDir, AtomicFile};

/// The container an archive is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A plain folder.
    Folder,
    /// An uncompressed tar file.
    Tar,
    /// A gzip-compressed tar file at the given level (0..=9).
    TarGz(u32),
}

impl ArchiveKind {
    /// Refuses a gzip level out of 0..=9.
    pub fn check(self) -> Result<()> {
        if let ArchiveKind::TarGz(level @ 10..) = self {
            return Err(Error::InvalidArgument(format!(
                "gzip compression level {level} is out of range: use 0 (none) to 9 (best)"
            )));
        }
        Ok(())
    }

    /// The kind a path asks for: `.tgz` / `.tar.gz` gzip, `.tar` tar, anything else a folder.
    pub fn from_path(path: &Path, compression_level: u32) -> ArchiveKind {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.ends_with(".tgz") || name.ends_with(".tar.gz") {
            ArchiveKind::TarGz(compression_level)
        } else if name.ends_with(".tar") {
            ArchiveKind::Tar
        } else {
            ArchiveKind::Folder
        }
    }
}

/// The contents of a model archive.
pub struct ModelFiles<'a> {
    /// The `graph.nnef` text.
    pub graph_nnef: &'a str,
    /// The `graph.quant` text, if any tensor is quantized.
    pub graph_quant: Option<&'a str>,
    /// Tensors by label.
    pub tensors: Vec<(String, DatSource<'a>)>,
}

/// Fixed modification time of archive members, so that the same model gives the same bytes.
const MEMBER_MTIME: u64 = 1_700_000_000;

/// Writes a model archive at `path`. Nothing appears at `path` until the archive is complete.
pub fn write_archive(
    path: &Path,
    kind: ArchiveKind,
    files: &ModelFiles,
    opts: &DatOptions,
    overwrite: bool,
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (label, source) in &files.tensors {
        validate_label("tensor", label)?;
        if !seen.insert(label.as_str()) {
            return Err(Error::DuplicateLabel {
                label: label.clone(),
            });
        }
        source.header(label, opts)?;
    }
    match kind {
        ArchiveKind::Folder => {
            let dir = AtomicDir::create(path, overwrite)?;
            write_text(&dir.path().join("graph.nnef"), files.graph_nnef)?;
            if let Some(q) = files.graph_quant {
                write_text(&dir.path().join("graph.quant"), q)?;
            }
            write_dats(dir.path(), &files.tensors, opts, false)?;
            dir.commit(overwrite)
        }
        ArchiveKind::Tar | ArchiveKind::TarGz(_) => {
            kind.check()?;
            let mut out = AtomicFile::create(path, overwrite)?;
            let w = BufWriter::with_capacity(1 << 20, out.file());
            let w = match kind {
                ArchiveKind::TarGz(level) => {
                    write_tar(GzEncoder::new(w, Compression::new(level)), files, opts)?
                        .finish()
                        .map_err(|e| Error::io(path, e))?
                }
                _ => write_tar(w, files, opts)?,
            };
            finish(
                w.into_inner()
                    .map_err(|e| Error::io(path, e.into_error()))?,
                path,
            )?;
            out.commit(overwrite)
        }
    }
}

fn finish(f: &mut File, path: &Path) -> Result<()> {
    f.flush().map_err(|e| Error::io(path, e))
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

pub(crate) fn member_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(MEMBER_MTIME);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn write_tar<W: Write>(w: W, files: &ModelFiles, opts: &DatOptions) -> Result<W> {
    let mut b = tar::Builder::new(w);
    let io = |e| Error::io("archive", e);
    let mut add = |name: &str, size: u64, data: &mut dyn Read| {
        b.append_data(&mut member_header(size), name, data)
            .map_err(io)
    };
    add(
        "graph.nnef",
        files.graph_nnef.len() as u64,
        &mut files.graph_nnef.as_bytes(),
    )?;
    if let Some(q) = files.graph_quant {
        add("graph.quant", q.len() as u64, &mut q.as_bytes())?;
    }
    for (label, source) in &files.tensors {
        let size = source.file_len(label, opts)?;
        let name = format!("{label}.dat");
        let header = source.header(label, opts)?;
        match source.payload(label, opts, &header)? {
            // Streamed from the tensor's memory, or from the one buffer made for it.
            Some(payload) => add(
                &name,
                size,
                &mut Cursor::new(header.encode()).chain(&payload[..]),
            )?,
            // A strided view: gathered into one buffer.
            None => {
                let mut buf = Vec::with_capacity(size as usize);
                source.write_to(label, opts, &mut buf)?;
                add(&name, size, &mut buf.as_slice())?;
            }
        }
    }
    b.into_inner().map_err(io)
}

/// Lists the members of a tar or tgz archive (given as bytes or as a file), refusing any member
/// that is not a regular file or whose path would leave the archive.
pub fn scan_archive(what: &str, reader: impl Read) -> Result<Vec<String>> {
    let mut reader = reader;
    let mut magic = [0u8; 2];
    let n = reader.read(&mut magic).map_err(|e| Error::io(what, e))?;
    let stream = Cursor::new(magic[..n].to_vec()).chain(reader);
    let bad = |reason: String| Error::Format {
        path: what.to_string(),
        reason,
    };
    let mut names = Vec::new();
    let mut visit = |ar: &mut tar::Archive<Box<dyn Read>>| -> Result<()> {
        for entry in ar.entries().map_err(|e| bad(e.to_string()))? {
            let entry = entry.map_err(|e| bad(format!("unreadable tar entry: {e}")))?;
            let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
            validate_member_path(what, &path)?;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                return Err(Error::UnsafePath {
                    what: what.to_string(),
                    label: path.display().to_string(),
                    reason: format!("archive members must be regular files, not {kind:?}"),
                });
            }
            names.push(path.display().to_string());
        }
        Ok(())
    };
    let inner: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(GzDecoder::new(stream))
    } else {
        Box::new(stream)
    };
    visit(&mut tar::Archive::new(inner))?;
    Ok(names)
}

/// Checks a model folder: regular files and sub-folders only (no links that could point
/// outside it).
pub fn scan_folder(dir: &Path) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if kind.is_symlink() {
                return Err(Error::UnsafePath {
                    what: dir.display().to_string(),
                    label: entry.path().display().to_string(),
                    reason: "symbolic links are not followed inside a model folder".into(),
                });
            }
            if kind.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}
