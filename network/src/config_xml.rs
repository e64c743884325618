//! `config.xml`, the one file pfSense and OPNsense keep their whole configuration in: what a
//! router backup holds for both, how it is recognized, and how it goes back (by hand: neither
//! API loads one).

use cloudlet_core::error::ProviderError;
use cloudlet_core::{ConfigFile, Imported};

/// The file's name.
pub const NAME: &str = "config.xml";

/// The largest one taken from a router (one with thousands of rules is a few MiB).
pub const MAX: usize = 32 << 20;

/// Whether `bytes` is an XML document whose root element is `<root>` (a byte-order mark and
/// an XML declaration may come first). Only the first 4 KiB are read.
pub fn has_root(bytes: &[u8], root: &str) -> bool {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    let body = match t.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map_or("", |(_, b)| b).trim_start(),
        None => t,
    };
    body.strip_prefix('<')
        .and_then(|b| b.strip_prefix(root))
        .is_some_and(|rest| rest.starts_with(['>', ' ', '/']))
}

/// The backed-up `config.xml` of a `root` router, checked, handed back as a file to load by
/// hand in the way `how` says.
pub fn by_hand(
    files: &[ConfigFile],
    root: &str,
    device: &str,
    how: &str,
) -> Result<Imported, ProviderError> {
    let Some(f) = files.iter().find(|f| f.name == NAME) else {
        return Err(ProviderError::InvalidData {
            what: "the router's backup".into(),
            message: format!("no {NAME} in it"),
        });
    };
    if !has_root(&f.bytes, root) {
        return Err(ProviderError::InvalidData {
            what: format!("the backed-up {NAME}"),
            message: format!("not {device}'s configuration (no `<{root}>` document)"),
        });
    }
    Ok(Imported::ByHand {
        file: NAME.into(),
        how: how.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::has_root;

    #[test]
    fn a_config_is_recognized_by_its_root() {
        assert!(has_root(
            b"<?xml version=\"1.0\"?>\n<opnsense>\n  <system/>\n</opnsense>\n",
            "opnsense"
        ));
        assert!(has_root(b"\xef\xbb\xbf<opnsense></opnsense>", "opnsense"));
        assert!(has_root(b"<pfsense version=\"24\">", "pfsense"));
        assert!(!has_root(
            b"<?xml version=\"1.0\"?><pfsense></pfsense>",
            "opnsense"
        ));
        assert!(!has_root(b"<pfsensex>", "pfsense"));
        assert!(!has_root(b"<html><body>login</body></html>", "pfsense"));
        assert!(!has_root(b"", "opnsense"));
    }
}
