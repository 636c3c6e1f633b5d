//! The world a benchmark runs `ward` in: the release binary beside `ward-bench`, a project
//! folder, and state, config and home of its own (no managed file).

use std::path::PathBuf;
use std::process::Command;

pub struct World {
    _dir: tempfile::TempDir,
    pub ward: PathBuf,
    pub proj: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    pub home: PathBuf,
}

impl World {
    pub fn new() -> World {
        let exe = std::env::current_exe().unwrap();
        let ward = exe.with_file_name("ward");
        assert!(
            ward.exists(),
            "build the ward binary first: cargo build --release -p ward -p ward-bench"
        );
        let dir = tempfile::tempdir().unwrap();
        let proj = dir.path().join("proj");
        std::fs::create_dir_all(&proj).unwrap();
        World {
            ward,
            state: dir.path().join("state"),
            config: dir.path().join("config"),
            home: dir.path().to_path_buf(),
            proj,
            _dir: dir,
        }
    }

    /// `ward ARGS` in the project folder, in this world.
    pub fn ward(&self, args: &[&str]) -> Command {
        self.ward_at(&self.ward, args)
    }

    /// The same command run by another `ward` binary (a build to compare with).
    pub fn ward_at(&self, bin: &std::path::Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .current_dir(&self.proj)
            .env("XDG_STATE_HOME", &self.state)
            .env("XDG_CONFIG_HOME", &self.config)
            .env("HOME", &self.home)
            .env("WARD_MANAGED", self.home.join("none.toml"));
        c
    }
}
