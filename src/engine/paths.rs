//! Which local files a statement may touch, decided in one place.
//!
//! [`PathAccess::confine`] turns a location as a client wrote it (a path, or a `file:` URL
//! in any letter case, with percent-escapes and dot segments) into the absolute path that
//! tenure then hands to DataFusion, or refuses it. It checks what the location names before
//! anything is read or written; [`ConfinedFiles`], the object store behind every local read,
//! listing and write of a server's clients, checks again each file it actually opens, after
//! resolving symbolic links, so that a glob or a directory cannot reach a file outside the
//! roots through a link inside them.

use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use url::Url;

use crate::error::{Error, Result};

/// Which local paths statements may read or write.
#[derive(Debug, Clone, PartialEq)]
pub enum PathAccess {
    /// Any path the process can reach: the embedded shell, run by the machine's own user.
    Unrestricted,
    /// Only paths under these directories: clients of the server.
    Roots(Vec<PathBuf>),
}

/// Where a location points, once parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// A local path: absolute, without `.` or `..`, percent-escapes of a `file:` URL
    /// decoded. It may end in a glob (`*`, `?`, `[`), which DataFusion expands.
    Local(PathBuf),
    /// An object-store URL (`s3://` or `s3a://`).
    S3(Url),
}

/// Parses a location: a URL when it starts with a scheme (`file:`, `s3:`, `s3a:`, in any
/// letter case), else a path (relative ones against the working directory).
pub fn parse_location(text: &str) -> Result<Location> {
    match scheme(text) {
        Some(scheme) if scheme.eq_ignore_ascii_case("file") => {
            let url = Url::parse(text)
                .map_err(|e| Error::invalid(format!("invalid location {text}: {e}")))?;
            if !matches!(url.host_str(), None | Some("" | "localhost")) {
                return Err(Error::invalid(format!(
                    "location {text} names another host; file: URLs are local"
                )));
            }
            // The URL parser has decoded nothing yet but has removed `.`/`..` segments,
            // including percent-encoded ones (%2e%2e); to_file_path decodes the rest.
            let path = url
                .to_file_path()
                .map_err(|()| Error::invalid(format!("invalid location {text}")))?;
            let mut path = absolute(&path)?;
            if text.ends_with('/') {
                path.push("");
            }
            Ok(Location::Local(path))
        }
        Some(scheme) if scheme.eq_ignore_ascii_case("s3") || scheme.eq_ignore_ascii_case("s3a") => {
            let url = Url::parse(text)
                .map_err(|e| Error::invalid(format!("invalid location {text}: {e}")))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(Error::invalid(format!("location {text} names no bucket")));
            }
            Ok(Location::S3(url))
        }
        Some(scheme) => Err(Error::unsupported(format!(
            "location {text}: {scheme}: URLs are not supported; use a local path, a file:// \
             URL or s3://bucket/path"
        ))),
        None => {
            let mut path = absolute(Path::new(text))?;
            if text.ends_with('/') {
                path.push("");
            }
            Ok(Location::Local(path))
        }
    }
}

/// The scheme of `text` if it starts like a URL (RFC 3986: a letter, then letters, digits,
/// `+`, `-` or `.`, then `:`), at least two characters long so that a drive letter is not
/// one.
fn scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (valid && scheme.len() > 1).then_some(scheme)
}

impl PathAccess {
    /// Parses `location` and, for a local one, checks it against the roots: the path
    /// itself, or for a glob the directory it is expanded in (each file the glob matches
    /// is checked again by [`ConfinedFiles`] when it is read).
    pub fn confine(&self, location: &str) -> Result<Location> {
        let parsed = parse_location(location)?;
        if let Location::Local(path) = &parsed {
            self.check(&glob_base(path))?;
        }
        Ok(parsed)
    }

    /// Fails unless `path` (absolute, lexically clean), with the symbolic links in its
    /// existing part resolved, lies under one of the roots.
    pub fn check(&self, path: &Path) -> Result<()> {
        let PathAccess::Roots(roots) = self else {
            return Ok(());
        };
        let resolved = resolve_existing_prefix(path);
        for root in roots {
            let root = absolute(root)?;
            let root = root.canonicalize().unwrap_or(root);
            if resolved.starts_with(&root) {
                return Ok(());
            }
        }
        let shown = if resolved == path {
            path.display().to_string()
        } else {
            format!(
                "{} (which resolves to {})",
                path.display(),
                resolved.display()
            )
        };
        Err(Error::PermissionDenied(format!(
            "{shown} is outside the directories this server may read and write ({}); \
             set allowed_roots in tenure.toml",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// The directory a glob is expanded in (the components before the first one with a glob
/// character), or the path itself when it has none.
fn glob_base(path: &Path) -> PathBuf {
    let mut base = PathBuf::new();
    for component in path.components() {
        if component
            .as_os_str()
            .to_string_lossy()
            .contains(['*', '?', '['])
        {
            break;
        }
        base.push(component);
    }
    base
}

/// `path` made absolute against the working directory, with `.` and `..` removed lexically.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut clean = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    Ok(clean)
}

/// Canonicalizes the longest existing ancestor of `path` and appends the rest.
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(std::ffi::OsStr::to_os_string),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = existing.canonicalize().unwrap_or(existing);
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    resolved
}

/// The local file system as server clients may use it: every object read, written,
/// listed, copied or deleted is checked against the roots after resolving symbolic links;
/// anything outside is `PermissionDenied`. Registered for `file://` in the server engine's
/// runtime, so DataFusion's listing tables and COPY TO go through it.
#[derive(Debug, Clone)]
pub struct ConfinedFiles {
    inner: Arc<LocalFileSystem>,
    access: PathAccess,
    /// Directories that may be read but not written: the engine's own tables, which
    /// DataFusion scans through this store too. (Clients cannot name them: their locations
    /// are confined to the roots before anything is read.)
    readable: PathAccess,
}

/// Whether an operation reads or writes.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    Read,
    Write,
}

impl ConfinedFiles {
    /// Reads and writes under `access`, and reads also under `readable`.
    pub fn new(access: PathAccess, readable: Vec<PathBuf>) -> ConfinedFiles {
        ConfinedFiles {
            inner: Arc::new(LocalFileSystem::new()),
            access,
            readable: PathAccess::Roots(readable),
        }
    }

    fn check(&self, location: &ObjectPath, usage: Use) -> object_store::Result<()> {
        let path = self.inner.path_to_filesystem(location)?;
        let path = absolute(&path).map_err(|e| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })?;
        match self.access.check(&path) {
            Ok(()) => Ok(()),
            Err(_) if usage == Use::Read && self.readable.check(&path).is_ok() => Ok(()),
            Err(e) => Err(object_store::Error::PermissionDenied {
                path: path.display().to_string(),
                source: Box::new(e),
            }),
        }
    }

    /// The listing `stream` with every entry checked.
    fn checked_listing(
        &self,
        stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let confined = self.clone();
        stream
            .map(move |entry| {
                let meta = entry?;
                confined.check(&meta.location, Use::Read)?;
                Ok(meta)
            })
            .boxed()
    }
}

impl fmt::Display for ConfinedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfinedFiles({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for ConfinedFiles {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(location, Use::Write)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(location, Use::Write)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check(location, Use::Read)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.check(location, Use::Read)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        let confined = self.clone();
        let checked = locations
            .map(move |location| {
                let location = location?;
                confined.check(&location, Use::Write)?;
                Ok(location)
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.checked_listing(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjectPath>,
        offset: &ObjectPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.checked_listing(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        let listing = self.inner.list_with_delimiter(prefix).await?;
        for meta in &listing.objects {
            self.check(&meta.location, Use::Read)?;
        }
        for directory in &listing.common_prefixes {
            self.check(directory, Use::Read)?;
        }
        Ok(listing)
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check(from, Use::Read)?;
        self.check(to, Use::Write)?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(text: &str) -> PathBuf {
        match parse_location(text).unwrap() {
            Location::Local(path) => path,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn locations_parse_as_urls_in_any_case() {
        assert_eq!(local("/data/x.parquet"), PathBuf::from("/data/x.parquet"));
        assert_eq!(local("file:///data/x"), PathBuf::from("/data/x"));
        assert_eq!(local("FILE:///etc/passwd"), PathBuf::from("/etc/passwd"));
        assert_eq!(
            local("File:///some/dir/y.csv"),
            PathBuf::from("/some/dir/y.csv")
        );
        // Percent-encoded dot segments are dot segments; other escapes are decoded.
        assert_eq!(
            local("file:///srv/import/%2e%2e/%2E%2E/x.csv"),
            PathBuf::from("/x.csv")
        );
        assert_eq!(
            local("file:///srv/a%20b.csv"),
            PathBuf::from("/srv/a b.csv")
        );
        // In a plain path a percent sign is a percent sign.
        assert_eq!(
            local("/srv/import/%2e%2e/x"),
            PathBuf::from("/srv/import/%2e%2e/x")
        );
        assert!(matches!(
            parse_location("S3://bucket/key").unwrap(),
            Location::S3(_)
        ));
        assert!(parse_location("http://169.254.169.254/latest").is_err());
        assert!(parse_location("file://otherhost/etc/passwd").is_err());
    }

    #[test]
    fn parent_components_cannot_escape_lexically() {
        let path = absolute(Path::new("/srv/import/../../etc/passwd")).unwrap();
        assert_eq!(path, PathBuf::from("/etc/passwd"));
    }

    #[test]
    fn roots_confine_paths_urls_globs_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("import");
        std::fs::create_dir_all(&root).unwrap();
        let outside = dir.path().join("secret.csv");
        std::fs::write(&outside, "x\n1\n").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link.csv")).unwrap();
        let access = PathAccess::Roots(vec![root.clone()]);
        let inside = root.join("a.csv");
        assert!(access.confine(&inside.display().to_string()).is_ok());
        assert!(
            access
                .confine(&format!("FILE://{}", outside.display()))
                .is_err()
        );
        assert!(
            access
                .confine(&format!("file://{}/%2e%2e/secret.csv", root.display()))
                .is_err()
        );
        assert!(
            access
                .confine(&root.join("link.csv").display().to_string())
                .is_err()
        );
        // A glob is checked where it is expanded ...
        assert!(access.confine(&format!("{}/l*", root.display())).is_ok());
        assert!(
            access
                .confine(&format!("{}/*.csv", dir.path().display()))
                .is_err()
        );
        // ... and each file it reaches is checked by the store.
        let tables = dir.path().join("tables");
        let store = ConfinedFiles::new(access, vec![tables.clone()]);
        let link = ObjectPath::from_absolute_path(root.join("link.csv")).unwrap();
        assert!(matches!(
            store.check(&link, Use::Read),
            Err(object_store::Error::PermissionDenied { .. })
        ));
        let file = ObjectPath::from_absolute_path(&inside).unwrap();
        assert!(store.check(&file, Use::Write).is_ok());
        // The engine's own tables are readable, not writable.
        let table_file = ObjectPath::from_absolute_path(tables.join("t1/part-0.parquet")).unwrap();
        assert!(store.check(&table_file, Use::Read).is_ok());
        assert!(store.check(&table_file, Use::Write).is_err());
    }
}
