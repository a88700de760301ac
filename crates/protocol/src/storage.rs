//! The job spec's `storage:` section: an S3-compatible bucket the *tenant* names, where the
//! job's checkpoints and outputs go instead of the provider's own store, and through which its
//! inputs reach every attempt's provider (sealed to the job's key: `JobSpec::inputs_blob`).
//!
//! ```yaml
//! storage:
//!   s3: { endpoint: https://s3.us-east-1.amazonaws.com, bucket: my-bucket, region: us-east-1, prefix: gpunet }
//!   credentials:
//!     access_key_id_env: AWS_ACCESS_KEY_ID          # read by `gpunet job submit` from its environment
//!     secret_access_key_env: AWS_SECRET_ACCESS_KEY
//!     session_token_env: AWS_SESSION_TOKEN          # optional: short-lived credentials
//! ```
//!
//! Each credential is given either as its value (`access_key_id: AKIA…`) or as the name of an
//! environment variable (`access_key_id_env: AWS_ACCESS_KEY_ID`) that the CLI reads at submit
//! time and puts in the manifest in its place ([`Storage::resolve_env`]), so people need not
//! write credentials in a file. A manifest carries only values: the provider cannot read the
//! tenant's environment, so a manifest with an `_env` name left is refused
//! ([`Storage::check_resolved`]).
//!
//! Credentials are secrets, kept exactly like `run.secrets`: they travel only inside the
//! manifest, which only ever travels sealed to the lease's provider; `Debug` prints
//! `<redacted>` for each value; no error message quotes one. The provider that runs the job
//! holds them while it runs (it must, to write to the bucket): tenants should give credentials
//! scoped to one bucket and prefix, and short-lived (`session_token`).
//!
//! Pure: parsing and checking only. Whether an endpoint may be reached (https, public
//! addresses) is the provider's decision, made where it resolves the name (`gpunet-blobs`'s
//! endpoint guard).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::jobspec::SpecError;

/// Longest `storage.s3.endpoint`, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 256;
/// Longest `storage.s3.prefix`, in bytes.
pub const MAX_PREFIX_BYTES: usize = 128;
/// Longest `storage.s3.region`, in bytes.
pub const MAX_REGION_BYTES: usize = 64;
/// Longest access key id, in bytes.
pub const MAX_ACCESS_KEY_ID_BYTES: usize = 128;
/// Longest secret access key, in bytes.
pub const MAX_SECRET_ACCESS_KEY_BYTES: usize = 256;
/// Longest session token, in bytes (AWS STS tokens run to about 2 KiB).
pub const MAX_SESSION_TOKEN_BYTES: usize = 4096;

/// Where a job's checkpoints and outputs go: the tenant's own bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub s3: S3Bucket,
    pub credentials: Credentials,
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Bucket {
    /// The service's URL, `https://host[:port]` (for AWS, `https://s3.<region>.amazonaws.com`).
    /// Requests are path-style: `<endpoint>/<bucket>/<key>`. A provider refuses `http://`, and
    /// any name that resolves to a loopback, private or otherwise non-public address, unless
    /// its operator allows them (a test network).
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Keys go under this prefix (`<prefix>/blobs/…`, `<prefix>/refs/jobs/…`); default none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// How to sign in to the bucket. Each of `access_key_id` and `secret_access_key` is given
/// once, as its value or as `<name>_env`, the environment variable the CLI reads it from at
/// submit; `session_token` (for short-lived credentials) likewise, and may be left out.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_env: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_id_env", &self.access_key_id_env)
            .field("secret_access_key", &self.secret_access_key)
            .field("secret_access_key_env", &self.secret_access_key_env)
            .field("session_token", &self.session_token)
            .field("session_token_env", &self.session_token_env)
            .finish()
    }
}

/// A secret value: `Debug` prints `<redacted>`, there is no `Display`, and a value of the
/// wrong type is refused without being quoted. Serialized as the plain string, for the
/// (sealed) manifest only.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> SecretString {
        SecretString(value)
    }

    /// The value, for signing requests with. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        fn not_a_string<E: de::Error>() -> E {
            E::custom("the value is not a string; quote it (not shown)")
        }
        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = SecretString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (not shown)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretString, E> {
                Ok(SecretString(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<SecretString, E> {
                Ok(SecretString(v))
            }
            // Every other shape: an error that does not quote the value (serde's default
            // message would).
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretString, E> {
                Err(not_a_string())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretString, E> {
                Err(not_a_string())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretString, E> {
                Err(not_a_string())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretString, E> {
                Err(not_a_string())
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<SecretString, E> {
                Err(not_a_string())
            }
            fn visit_unit<E: de::Error>(self) -> Result<SecretString, E> {
                Err(not_a_string())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretString, A::Error> {
                Err(not_a_string())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<SecretString, A::Error> {
                Err(not_a_string())
            }
        }
        d.deserialize_str(SecretVisitor)
    }
}

/// One credential's two spellings: its value, or the environment variable holding it.
struct Field<'a> {
    name: &'static str,
    value: &'a Option<SecretString>,
    env: &'a Option<String>,
    max_bytes: usize,
    required: bool,
}

impl Credentials {
    fn fields(&self) -> [Field<'_>; 3] {
        [
            Field {
                name: "access_key_id",
                value: &self.access_key_id,
                env: &self.access_key_id_env,
                max_bytes: MAX_ACCESS_KEY_ID_BYTES,
                required: true,
            },
            Field {
                name: "secret_access_key",
                value: &self.secret_access_key,
                env: &self.secret_access_key_env,
                max_bytes: MAX_SECRET_ACCESS_KEY_BYTES,
                required: true,
            },
            Field {
                name: "session_token",
                value: &self.session_token,
                env: &self.session_token_env,
                max_bytes: MAX_SESSION_TOKEN_BYTES,
                required: false,
            },
        ]
    }

    fn validate(&self) -> Result<(), SpecError> {
        for field in self.fields() {
            let path = format!("storage.credentials.{}", field.name);
            match (field.value, field.env) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        path,
                        format!(
                            "is given both as a value and as {}_env; keep one",
                            field.name
                        ),
                    ));
                }
                (None, None) if field.required => {
                    return Err(invalid(
                        path,
                        format!(
                            "is missing; give {0}_env: <environment variable> (read when the \
                             job is submitted) or {0}: <value>",
                            field.name
                        ),
                    ));
                }
                (None, None) => {}
                (Some(value), None) => check_secret(&path, value.expose(), field.max_bytes)?,
                (None, Some(env)) => {
                    if !crate::jobspec::is_env_name(env) {
                        return Err(invalid(
                            format!("{path}_env"),
                            format!(
                                "{:?} is not an environment variable name; use letters, digits \
                                 and '_', e.g. AWS_ACCESS_KEY_ID",
                                env.escape_debug().to_string()
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A secret's shape, never quoting it: 1 to `max` bytes of printable ASCII without spaces
/// (what S3 keys and tokens are).
fn check_secret(path: &str, value: &str, max: usize) -> Result<(), SpecError> {
    if value.is_empty() {
        return Err(invalid(path, "is empty; give the value, or its _env form"));
    }
    if value.len() > max {
        return Err(invalid(
            path,
            format!(
                "is {} bytes; at most {max} are allowed (not shown)",
                value.len()
            ),
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            path,
            "holds a space, a control character or a non-ASCII character (not shown); copy \
             the credential again",
        ));
    }
    Ok(())
}

fn invalid(path: impl Into<String>, why: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        path: path.into(),
        why: why.into(),
    }
}

/// A checked endpoint URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// A DNS name, an IPv4 address, or an IPv6 address without its brackets.
    pub host: String,
    /// The port, or `None` for the scheme's (443, 80).
    pub port: Option<u16>,
}

impl Endpoint {
    /// Parses `scheme://host[:port][/]`: `https` or `http`, no user, path, query or fragment.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if text.len() > MAX_ENDPOINT_BYTES {
            return Err(format!(
                "is {} bytes; at most {MAX_ENDPOINT_BYTES} are allowed",
                text.len()
            ));
        }
        let example = "e.g. https://s3.us-east-1.amazonaws.com";
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "{:?} must start with https:// ({example})",
                text.escape_debug().to_string()
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('@') {
            return Err(
                "holds a user name or password; give the credentials under storage.credentials"
                    .into(),
            );
        }
        if authority.contains(['/', '?', '#']) {
            return Err(format!(
                "{:?} must be only scheme, host and port, without a path ({example}); the \
                 bucket goes in storage.s3.bucket",
                text.escape_debug().to_string()
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| "has an IPv6 address without its closing ']'".to_owned())?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("[{}] is not an IPv6 address", host.escape_debug()));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or("has text after the IPv6 address")?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => {
                    return Err(format!(
                        "port {:?} is not 1 to 65535",
                        p.escape_debug().to_string()
                    ));
                }
            },
        };
        let bracketed = authority.starts_with('[');
        let name_ok = bracketed
            || (!host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
        if !name_ok {
            return Err(format!(
                "host {:?} is not a DNS name or an address",
                host.escape_debug().to_string()
            ));
        }
        Ok(Endpoint {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl Storage {
    /// Checks every field; no message quotes a credential.
    pub fn validate(&self) -> Result<(), SpecError> {
        let s3 = &self.s3;
        Endpoint::parse(&s3.endpoint).map_err(|why| invalid("storage.s3.endpoint", why))?;
        check_bucket(&s3.bucket)?;
        if s3.region.is_empty()
            || s3.region.len() > MAX_REGION_BYTES
            || !s3
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "storage.s3.region",
                format!(
                    "{:?} must be 1 to {MAX_REGION_BYTES} bytes of a-z, 0-9 and '-', e.g. \
                     us-east-1 (most S3-compatible services accept us-east-1)",
                    s3.region.escape_debug().to_string()
                ),
            ));
        }
        check_prefix(&s3.prefix)?;
        self.credentials.validate()
    }

    /// The manifest's rule: every credential is a value, not an environment variable's name
    /// (the provider cannot read the tenant's environment).
    pub fn check_resolved(&self) -> Result<(), SpecError> {
        for field in self.credentials.fields() {
            if field.env.is_some() {
                return Err(invalid(
                    format!("storage.credentials.{}_env", field.name),
                    "is read by gpunet when the job is submitted, and a manifest carries the \
                     value instead; submit the spec with `gpunet job submit`",
                ));
            }
        }
        Ok(())
    }

    /// Replaces every `<credential>_env` by the value `lookup` gives for that name (the CLI
    /// passes the process environment), so the manifest carries values. A name that is not
    /// set is an error naming it (never a value).
    pub fn resolve_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), SpecError> {
        let c = &mut self.credentials;
        for (name, value, env) in [
            (
                "access_key_id",
                &mut c.access_key_id,
                &mut c.access_key_id_env,
            ),
            (
                "secret_access_key",
                &mut c.secret_access_key,
                &mut c.secret_access_key_env,
            ),
            (
                "session_token",
                &mut c.session_token,
                &mut c.session_token_env,
            ),
        ] {
            let Some(var) = env.take() else {
                continue;
            };
            match lookup(&var) {
                Some(v) => *value = Some(SecretString(v)),
                None => {
                    return Err(invalid(
                        format!("storage.credentials.{name}_env"),
                        format!(
                            "names {var}, which is not set in this environment; export it \
                             before `gpunet job submit`, or give {name} instead"
                        ),
                    ));
                }
            }
        }
        self.validate()
    }
}

/// S3's bucket naming rules: 3 to 63 bytes of a-z, 0-9, '.' and '-', starting and ending with
/// a letter or digit, no `..`.
fn check_bucket(bucket: &str) -> Result<(), SpecError> {
    let b = bucket.as_bytes();
    let ok = (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && !bucket.contains("..");
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "storage.s3.bucket",
            format!(
                "{:?} is not an S3 bucket name: 3 to 63 bytes of a-z, 0-9, '.' and '-', \
                 starting and ending with a letter or digit",
                bucket.escape_debug().to_string()
            ),
        ))
    }
}

/// Segments of ASCII letters, digits, '.', '_' and '-' separated by single '/', none starting
/// with '.' (the blob store's ref-name rule), at most [`MAX_PREFIX_BYTES`].
fn check_prefix(prefix: &str) -> Result<(), SpecError> {
    if prefix.is_empty() {
        return Ok(());
    }
    let ok = prefix.len() <= MAX_PREFIX_BYTES
        && prefix.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "storage.s3.prefix",
            format!(
                "{:?} must be at most {MAX_PREFIX_BYTES} bytes of segments of letters, digits, \
                 '.', '_' and '-' separated by single '/', none starting with '.', e.g. gpunet \
                 or team/jobs",
                prefix.escape_debug().to_string()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_scheme_host_and_port_only() {
        let ok = |text: &str, https: bool, host: &str, port: Option<u16>| {
            assert_eq!(
                Endpoint::parse(text),
                Ok(Endpoint {
                    https,
                    host: host.into(),
                    port
                }),
                "{text}"
            );
        };
        ok("https://s3.example.com", true, "s3.example.com", None);
        ok("https://S3.Example.com/", true, "s3.example.com", None);
        ok("http://127.0.0.1:9000", false, "127.0.0.1", Some(9000));
        ok("https://[::1]:443", true, "::1", Some(443));
        ok("https://[fd00::1]", true, "fd00::1", None);
        let bad = |text: &str, want: &str| {
            let e = Endpoint::parse(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
        };
        bad("s3.example.com", "must start with https://");
        bad("ftp://x", "must start with https://");
        bad("https://user:pw@s3.example.com", "user name or password");
        bad("https://s3.example.com/bucket", "without a path");
        bad("https://s3.example.com?x=1", "without a path");
        bad("https://s3.example.com:0", "port");
        bad("https://s3.example.com:99999", "port");
        bad("https://s3.example.com:+80", "port");
        bad("https://", "not a DNS name");
        bad("https://exa mple.com", "not a DNS name");
        bad("https://[::1", "closing");
        bad("https://[nope]", "not an IPv6");
        bad("https://::1", "not a DNS name");
        bad(&format!("https://{}", "a".repeat(300)), "at most 256");
    }
}
