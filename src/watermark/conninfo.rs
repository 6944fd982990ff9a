//! Takes libpq's TLS parameters out of a DSN: tokio-postgres knows only `sslmode` disable /
//! prefer / require and rejects `sslrootcert`, `sslcert`, `sslkey`, so they are read here and
//! the rest of the DSN goes to tokio-postgres unchanged.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use super::tls::SslParams;

/// A DSN without its TLS parameters, and those parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    /// What tokio-postgres parses.
    pub rest: String,
    /// `sslmode`, `sslrootcert`, `sslcert`, `sslkey` as written (decoded).
    pub ssl: SslParams,
}

fn take(ssl: &mut SslParams, key: &str, value: String) -> bool {
    let slot = match key {
        "sslmode" => &mut ssl.mode,
        "sslrootcert" => &mut ssl.root_cert,
        "sslcert" => &mut ssl.cert,
        "sslkey" => &mut ssl.key,
        _ => return false,
    };
    *slot = Some(value);
    true
}

/// Splits `dsn` (a `postgres[ql]://` URI or `key=value` pairs) into the part tokio-postgres
/// reads and the TLS parameters.
///
/// # Errors
/// A message when a parameter is not valid UTF-8 once percent-decoded, or a quote is not closed.
pub fn split(dsn: &str) -> Result<Split, String> {
    let prefix = ["postgresql://", "postgres://"].into_iter().find(|p| dsn.starts_with(p));
    match prefix {
        Some(p) => split_uri(p, &dsn[p.len()..]),
        None => split_pairs(dsn),
    }
}

fn decode(s: &str) -> Result<String, String> {
    percent_decode_str(s).decode_utf8().map(Cow::into_owned).map_err(|_| "a DSN parameter is not UTF-8 once percent-decoded".to_owned())
}

fn split_uri(prefix: &str, body: &str) -> Result<Split, String> {
    // As tokio-postgres reads it: the credentials end at the first '@', the query starts at
    // the first '?' after them.
    let after_credentials = body.find('@').map_or(0, |i| i + 1);
    let Some(q) = body[after_credentials..].find('?').map(|i| after_credentials + i) else {
        return Ok(Split { rest: format!("{prefix}{body}"), ssl: SslParams::default() });
    };
    let mut ssl = SslParams::default();
    let mut kept = Vec::new();
    for piece in body[q + 1..].split('&') {
        let taken = match piece.split_once('=') {
            Some((k, v)) => take(&mut ssl, &decode(k)?, decode(v)?),
            None => false,
        };
        if !taken {
            kept.push(piece);
        }
    }
    let mut rest = format!("{prefix}{}", &body[..q]);
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok(Split { rest, ssl })
}

/// `key = value` pairs as libpq writes them: values bare or in single quotes, `\` escaping.
fn split_pairs(dsn: &str) -> Result<Split, String> {
    let mut ssl = SslParams::default();
    let mut kept: Vec<&str> = Vec::new();
    let bytes = dsn.as_bytes();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &dsn[start..i];
        i = skip_ws(i);
        if i >= bytes.len() || bytes[i] != b'=' {
            // Not a pair: tokio-postgres will say what is wrong with it.
            kept.push(&dsn[start..]);
            break;
        }
        i = skip_ws(i + 1);
        let mut value = Vec::new();
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(format!("the value of {key} has no closing quote")),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        value.push(bytes[i + 1]);
                        i += 2;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                value.push(bytes[i]);
                i += 1;
            }
        }
        let value = String::from_utf8(value).map_err(|_| format!("the value of {key} is not UTF-8"))?;
        if !take(&mut ssl, key, value) {
            kept.push(&dsn[start..i]);
        }
    }
    Ok(Split { rest: kept.join(" "), ssl })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssl(mode: Option<&str>, root: Option<&str>, cert: Option<&str>, key: Option<&str>) -> SslParams {
        let s = |v: Option<&str>| v.map(str::to_owned);
        SslParams { mode: s(mode), root_cert: s(root), cert: s(cert), key: s(key) }
    }

    #[test]
    fn uri_parameters_are_taken_out_and_the_rest_kept_in_order() {
        let s = split("postgresql://u:p@h:5432/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca%20dir%2Fca.pem&connect_timeout=2").unwrap();
        assert_eq!(s.rest, "postgresql://u:p@h:5432/db?application_name=x&connect_timeout=2");
        assert_eq!(s.ssl, ssl(Some("verify-full"), Some("/tmp/ca dir/ca.pem"), None, None));
        let s = split("postgres://h/db?sslmode=require&sslcert=/c.pem&sslkey=/k.pem").unwrap();
        assert_eq!(s.rest, "postgres://h/db");
        assert_eq!(s.ssl, ssl(Some("require"), None, Some("/c.pem"), Some("/k.pem")));
        let s = split("postgresql://u@h/db").unwrap();
        assert_eq!((s.rest.as_str(), s.ssl), ("postgresql://u@h/db", SslParams::default()));
    }

    #[test]
    fn a_question_mark_in_the_credentials_is_not_the_query() {
        let s = split("postgresql://u:p?ss@h/db?sslmode=require").unwrap();
        assert_eq!(s.rest, "postgresql://u:p?ss@h/db");
        assert_eq!(s.ssl.mode.as_deref(), Some("require"));
    }

    #[test]
    fn key_value_pairs_quoted_or_bare() {
        let s = split("host=h  sslmode = verify-ca password='a b\\'c' sslrootcert='/my certs/ca.pem' dbname=d").unwrap();
        assert_eq!(s.rest, "host=h password='a b\\'c' dbname=d");
        assert_eq!(s.ssl, ssl(Some("verify-ca"), Some("/my certs/ca.pem"), None, None));
        assert!(split("host=h sslrootcert='/unclosed").unwrap_err().contains("closing quote"));
        assert_eq!(split("").unwrap().rest, "");
    }
}
