//! Files the server keeps hold account data (phone numbers, SMS codes in the outbox, PIN
//! records): they are owner-only (mode 0600) from the moment they exist, and tightened if an
//! older version left them readable by others.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Opens `path` for appending, creating it 0600 if absent (and tightening it if not).
pub fn open_append_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    tighten(&file)?;
    Ok(file)
}

/// Creates the SQLite database file 0600 before SQLite opens it: SQLite then gives its `-wal`
/// and `-shm` files the database file's mode. Leftover `-wal`/`-shm` files are tightened too.
pub fn prepare_sqlite_file(path: &Path) -> io::Result<()> {
    drop(open_append_private(path)?);
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_os_string();
        side.push(suffix);
        match File::open(Path::new(&side)) {
            Ok(f) => tighten(&f)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn tighten(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_file: &File) -> io::Result<()> {
    Ok(())
}
