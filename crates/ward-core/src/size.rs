//! Byte sizes as people write them in manifests: `10485760`, `"10MiB"`, `"512M"`, `"2GB"`.
//! `K`/`M`/`G`/`T` and `KiB`/`MiB`/... are powers of 1024 (as cgroups and Docker read them);
//! `KB`/`MB`/`GB`/`TB` are powers of 1000.

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "`{s}` is not a size (write e.g. 10485760, \"10MiB\" or \"512M\")"
        ));
    }
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is too large"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Print a size the way `parse_size` reads it back.
pub fn format_size(n: u64) -> String {
    for (unit, m) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n >= m && n.is_multiple_of(m) {
            return format!("{}{unit}", n / m);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10485760));
        assert_eq!(parse_size("10M"), Ok(10485760));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10XB").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(format_size(10485760), "10MiB");
        assert_eq!(format_size(1000), "1000B");
    }
}
