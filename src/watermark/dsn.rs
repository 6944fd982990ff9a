//! Masking passwords in connection strings, for every message a user may see.
//!
//! The input may be one DSN or free text holding some (an error message). A password written
//! raw, not percent-encoded, may hold `:`, `/`, `@`, `%`, `?` or spaces, so no parser can tell
//! where it ends; the rule is chosen so that no byte of it is ever shown:
//! - in `scheme://user:password@host…`, the password runs from the first `:` of the userinfo
//!   to the **last** `@` before the end of the line (or the next `scheme://`). When something
//!   after the host holds an `@`, more than the password is masked; never less.
//! - `password=value` (any case, so `sslpassword=` and `PGPASSWORD=` too) is masked up to the
//!   next `&`, `;` or blank, or, quoted, to the closing quote.

const MASK: &str = "***";

/// Every password in `text` replaced by `***` (see the module's rules).
#[must_use]
pub fn mask_dsn(text: &str) -> String {
    mask_password_keys(&mask_userinfo(text))
}

/// Where the `scheme://` starting before `sep` (the index of its `://`) begins, if the bytes
/// before are a URI scheme.
fn scheme_start(bytes: &[u8], sep: usize) -> Option<usize> {
    let start = bytes[..sep].iter().rposition(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))).map_or(0, |i| i + 1);
    (start < sep && bytes[start].is_ascii_alphabetic()).then_some(start)
}

fn mask_userinfo(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(sep) = text[search..].find("://").map(|i| search + i) {
        let auth = sep + 3;
        search = auth;
        if scheme_start(bytes, sep).is_none() || bytes.get(auth) == Some(&b'/') {
            continue;
        }
        // This DSN ends at the end of the line, or where the next one starts.
        let line_end = text[auth..].find(['\n', '\r']).map_or(text.len(), |i| auth + i);
        let end = text[auth..line_end]
            .find("://")
            .and_then(|i| scheme_start(bytes, auth + i))
            .unwrap_or(line_end);
        // The user name ends at the first ':'; no '/', '@' or blank may come before it (those
        // mean `host/db:`, `user@host:port`: no password).
        let Some(colon) = text[auth..end].find(':').map(|i| auth + i) else { continue };
        if text[auth..colon].contains(['/', '@', ' ', '\t']) {
            continue;
        }
        let Some(at) = text[colon..end].rfind('@').map(|i| colon + i) else { continue };
        out.push_str(&text[copied..=colon]);
        out.push_str(MASK);
        copied = at;
        search = at;
    }
    out.push_str(&text[copied..]);
    out
}

fn mask_password_keys(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password=") {
        let start = i + found + "password=".len();
        out.push_str(&s[i..start]);
        out.push_str(MASK);
        i = match bytes.get(start) {
            Some(&q @ (b'\'' | b'"')) => {
                // Quoted: up to the closing quote, `\` escaping (libpq's key=value syntax).
                let mut j = start + 1;
                while j < bytes.len() && bytes[j] != q {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                (j + 1).min(bytes.len())
            }
            _ => s[start..].find(['&', ' ', '\t', '\n', ';']).map_or(s.len(), |j| start + j),
        };
    }
    out.push_str(&s[i..]);
    out
}

#[cfg(test)]
mod tests {
    use super::mask_dsn;

    #[test]
    fn percent_encoded_passwords() {
        assert_eq!(mask_dsn("postgresql://u:p%40ss%3Aw%2Frd%25@h:5432/db"), "postgresql://u:***@h:5432/db");
        assert_eq!(mask_dsn("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(mask_dsn("postgresql://:secret@h/db"), "postgresql://:***@h/db");
    }

    #[test]
    fn raw_passwords_are_masked_whole() {
        for (dsn, host) in [
            ("postgresql://u:ss:w/rd%@host/db", "@host/db"),
            ("postgresql://u:p@ss@host/db", "@host/db"),
            ("postgresql://u:a/b@c:d%zz@host:5432/db?sslmode=require", "@host:5432/db?sslmode=require"),
            ("postgres://u:pa ss?#x@host/db", "@host/db"),
            ("postgresql://u:@@@@host/db", "@host/db"),
        ] {
            let masked = mask_dsn(dsn);
            assert_eq!(masked, format!("{}***{host}", &dsn[..dsn.find(':').unwrap() + 5]), "{dsn}");
        }
    }

    #[test]
    fn inside_free_text() {
        assert_eq!(
            mask_dsn("cannot reach the tracking database postgresql://u:ss:w/rd%@10.0.0.1/db: connection refused"),
            "cannot reach the tracking database postgresql://u:***@10.0.0.1/db: connection refused"
        );
        assert_eq!(
            mask_dsn("from postgresql://a:one@h1/x to postgres://b:two@h2/y\nnext line x@y"),
            "from postgresql://a:***@h1/x to postgres://b:***@h2/y\nnext line x@y"
        );
        // Already masked text stays as it is.
        let once = mask_dsn("postgresql://u:p@ss@h/db failed");
        assert_eq!(mask_dsn(&once), once);
        // An '@' after the host hides more than the password, never less.
        assert_eq!(mask_dsn("postgresql://u:pw@h/db?application_name=a@b"), "postgresql://u:***@b");
    }

    #[test]
    fn no_password_nothing_masked() {
        for s in [
            "postgresql://u@h/db",
            "postgresql://u@h:5432/db?x=a@b",
            "postgresql://h:5432/db",
            "postgresql://h/db: user x@y",
            "sqlite:////tmp/a:b@c/mlflow.db",
            "sqlite:///rel/mlflow.db",
            "http://127.0.0.1:5000",
            "no dsn here: a@b",
            "://u:p@h",
        ] {
            assert_eq!(mask_dsn(s), s);
        }
    }

    #[test]
    fn password_keys() {
        assert_eq!(mask_dsn("host=h password=secret user=u"), "host=h password=*** user=u");
        assert_eq!(mask_dsn("host=h password='sec ret\\'s' user=u"), "host=h password=*** user=u");
        assert_eq!(mask_dsn("postgresql://h/db?user=u&password=s3&x=1"), "postgresql://h/db?user=u&password=***&x=1");
        assert_eq!(mask_dsn("postgresql://h/db?sslpassword=k3y&sslmode=verify-full"), "postgresql://h/db?sslpassword=***&sslmode=verify-full");
        assert_eq!(mask_dsn("PGPASSWORD=x psql"), "PGPASSWORD=*** psql");
        assert_eq!(mask_dsn("password='unclosed"), "password=***");
    }

    #[test]
    fn paths_are_not_secrets() {
        let dsn = "postgresql://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&sslcert=/home/u/.pg/c.pem&sslkey=/home/u/.pg/k.key";
        assert_eq!(mask_dsn(dsn), dsn);
        assert_eq!(
            mask_dsn("postgresql://u:pw@h/db?sslkey=/k.key&sslrootcert=/ca.pem"),
            "postgresql://u:***@h/db?sslkey=/k.key&sslrootcert=/ca.pem"
        );
        assert_eq!(mask_dsn("sslmode=require sslkey=/k.key password=pw"), "sslmode=require sslkey=/k.key password=***");
    }
}
