//! Masking passwords in connection strings, for every message a user may see.

/// `scheme://user:secret@host/db?password=x` → `scheme://user:***@host/db?password=***`;
/// key-value DSNs (`password=x`) are masked too.
#[must_use]
pub fn mask_dsn(dsn: &str) -> String {
    let mut out = dsn.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        // The userinfo ends at the last '@' before the path.
        let path_start = out[rest..].find('/').map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..path_start].rfind('@').map(|i| rest + i) {
            if let Some(colon) = out[rest..at].find(':').map(|i| rest + i) {
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    mask_password_keys(&out)
}

fn mask_password_keys(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password=") {
        let start = i + found + "password=".len();
        out.push_str(&s[i..start]);
        out.push_str("***");
        let end = s[start..].find(['&', ' ', ';']).map_or(s.len(), |j| start + j);
        i = end;
    }
    out.push_str(&s[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::mask_dsn;

    #[test]
    fn masks_userinfo_and_keys() {
        assert_eq!(mask_dsn("postgresql://u:p%40ss%3Aw%2Frd%25@h:5432/db"), "postgresql://u:***@h:5432/db");
        assert_eq!(mask_dsn("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(mask_dsn("host=h password=secret user=u"), "host=h password=*** user=u");
        assert_eq!(mask_dsn("postgresql://h/db?user=u&password=s3&x=1"), "postgresql://h/db?user=u&password=***&x=1");
        assert_eq!(mask_dsn("sqlite:////tmp/mlflow.db"), "sqlite:////tmp/mlflow.db");
    }
}
