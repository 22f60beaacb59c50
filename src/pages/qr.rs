//! QR codes as inline SVG (no image requests, nothing for the CSP to allow): one path of
//! unit squares over a white background with a four-module quiet zone.

use qrcodegen::{QrCode, QrCodeEcc};

/// The SVG for `text`, or `None` when it does not fit in a QR code.
pub fn svg(text: &str, title: &str) -> Option<String> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let size = qr.size();
    let border = 4;
    let full = size + 2 * border;
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    Some(format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="qr" viewBox="0 0 {full} {full}" role="img" aria-label="{title}" shape-rendering="crispEdges"><title>{title}</title><rect width="100%" height="100%" fill="#fff"/><path d="{path}" fill="#000"/></svg>"##
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_squares_in_an_svg() {
        let s = super::svg("otpauth://totp/a:b?secret=ABC", "QR <code>").unwrap();
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("h1v1h-1z"));
        assert!(s.contains("QR &lt;code&gt;"), "the title is escaped");
        assert!(!s.contains("style="));
        assert!(super::svg(&"x".repeat(5000), "t").is_none());
    }
}
