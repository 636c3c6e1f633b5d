//! CSS: whether declarations hide what they apply to.

pub(crate) fn number(v: &str) -> Option<f64> {
    let v = v.trim();
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(v.len());
    let n: f64 = v[..end].parse().ok()?;
    Some(if v[end..].trim() == "%" { n / 100.0 } else { n })
}

fn white(v: &str) -> bool {
    let v: String = v
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    matches!(
        v.as_str(),
        "#fff"
            | "#ffffff"
            | "#ffff"
            | "#ffffffff"
            | "white"
            | "rgb(255,255,255)"
            | "rgba(255,255,255,1)"
    )
}

/// `transparent`, or an rgba/hsla/#rrggbbaa colour with alpha 0.
fn transparent(v: &str) -> bool {
    let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    v == "transparent"
        || ((v.starts_with("rgba(") || v.starts_with("hsla("))
            && (v.ends_with(",0)") || v.ends_with(",0.0)") || v.ends_with(",0%)")))
        || (v.starts_with('#')
            && ((v.len() == 9 && v.ends_with("00")) || (v.len() == 5 && v.ends_with('0'))))
}

/// Whether a CSS declaration list hides what it applies to.
pub(crate) fn style_hides(style: &str) -> bool {
    let mut color = None;
    let mut background = None;
    let mut overflow_hidden = false;
    let mut zero_box = false;
    for decl in style.split(';') {
        let Some((k, v)) = decl.split_once(':') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v
            .trim()
            .trim_end_matches("!important")
            .trim()
            .to_ascii_lowercase();
        let n = number(&v);
        let px = |v: &str| v.ends_with("px") || v.trim().parse::<f64>().is_ok();
        match k.as_str() {
            "display" if v == "none" => return true,
            "visibility" if v == "hidden" || v == "collapse" => return true,
            "opacity" if n.is_some_and(|n| n <= 0.01) => return true,
            "font-size" => {
                if let Some(n) = n {
                    if (px(&v) && n < 2.0)
                        || (v.ends_with("pt") && n < 1.5)
                        || ((v.ends_with("em") || v.ends_with("rem")) && n < 0.1)
                        || (v.ends_with('%') && n < 0.05)
                        || n <= 0.0
                    {
                        return true;
                    }
                }
            }
            "left" | "top" | "text-indent" | "margin-left" | "margin-top"
                if n.is_some_and(|n| n <= -999.0) =>
            {
                return true
            }
            "transform" if v.replace(' ', "").contains("scale(0)") => return true,
            "clip" if v.replace(' ', "").starts_with("rect(0") => return true,
            "clip-path"
                if v.replace(' ', "").contains("inset(50%)")
                    || v.replace(' ', "").contains("inset(100%)")
                    || v.replace(' ', "").contains("circle(0") =>
            {
                return true
            }
            "height" | "max-height" | "width" | "max-width" if n.is_some_and(|n| n <= 0.0) => {
                zero_box = true
            }
            "overflow" if v == "hidden" => overflow_hidden = true,
            "color" if transparent(&v) => return true,
            "color" => color = Some(v.clone()),
            "background" | "background-color" => background = Some(v.clone()),
            _ => {}
        }
    }
    if zero_box && overflow_hidden {
        return true;
    }
    match (color, background) {
        (Some(c), Some(b)) => c == b || (white(&c) && white(&b)),
        // White text on the page's default white.
        (Some(c), None) => white(&c),
        _ => false,
    }
}
