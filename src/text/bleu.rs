//! Corpus BLEU-4 as sacreBLEU computes it by default: its "13a" tokenization (mteval-v13a),
//! clipped n-gram precisions summed over the corpus, the brevity penalty, and the "exp"
//! smoothing of a zero count.

use std::collections::HashMap;

/// sacreBLEU's 13a tokenization of one line.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut s = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if s.contains('&') {
        s = s.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    let chars: Vec<char> = format!(" {s} ").chars().collect();
    // Rule 1: most ASCII punctuation becomes its own token.
    let mut a = Vec::with_capacity(chars.len() * 2);
    for &c in &chars {
        if is_13a_punct(c) {
            a.extend([' ', c, ' ']);
        } else {
            a.push(c);
        }
    }
    // Rules 2-4 are left-to-right substitutions of two-character matches.
    let digit = |c: char| c.is_ascii_digit();
    let period_comma = |c: char| c == '.' || c == ',';
    let a = substitute(&a, |x, y| !digit(x) && period_comma(y), |x, y| vec![x, ' ', y, ' ']);
    let a = substitute(&a, |x, y| period_comma(x) && !digit(y), |x, y| vec![' ', x, ' ', y]);
    let a = substitute(&a, |x, y| digit(x) && y == '-', |x, y| vec![x, ' ', y, ' ']);
    a.into_iter().collect::<String>().split_whitespace().map(str::to_string).collect()
}

fn is_13a_punct(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

fn substitute(
    s: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() * 2);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && matches(s[i], s[i + 1]) {
            out.extend(replace(s[i], s[i + 1]));
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Corpus statistics: matches and totals per order, and the two lengths.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BleuStats {
    pub matches: [u64; 4],
    pub totals: [u64; 4],
    pub hyp_len: u64,
    pub ref_len: u64,
}

impl BleuStats {
    /// Adds one hypothesis and its reference (both untokenized).
    pub fn add(&mut self, hypothesis: &str, reference: &str) {
        let (h, r) = (tokenize_13a(hypothesis), tokenize_13a(reference));
        self.hyp_len += h.len() as u64;
        self.ref_len += r.len() as u64;
        for n in 1..=4 {
            let ref_counts = ngrams(&r, n);
            for (g, count) in ngrams(&h, n) {
                self.matches[n - 1] += count.min(ref_counts.get(&g).copied().unwrap_or(0));
                self.totals[n - 1] += count;
            }
        }
    }

    /// BLEU in [0, 100].
    pub fn score(&self) -> f64 {
        let mut log_sum = 0.0;
        let mut smooth = 1.0;
        for n in 0..4 {
            if self.totals[n] == 0 {
                // sacreBLEU stops here, leaving this and later precisions at 0.
                log_sum += -9_999_999_999.0 * (4 - n) as f64;
                break;
            }
            let p = if self.matches[n] == 0 {
                smooth *= 2.0;
                100.0 / (smooth * self.totals[n] as f64)
            } else {
                100.0 * self.matches[n] as f64 / self.totals[n] as f64
            };
            log_sum += p.ln();
        }
        let bp = if self.hyp_len >= self.ref_len {
            1.0
        } else if self.hyp_len == 0 {
            0.0
        } else {
            (1.0 - self.ref_len as f64 / self.hyp_len as f64).exp()
        };
        bp * (log_sum / 4.0).exp()
    }
}

impl std::fmt::Display for BleuStats {
    /// sacreBLEU's summary: `BLEU = 4.00 31.2/7.9/2.5/0.9 (BP = 0.951 ratio = 0.952 hyp_len = ...
    /// ref_len = ...)`, so a low score shows whether precision or length is to blame.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p: Vec<String> =
            (0..4).map(|n| format!("{:.1}", 100.0 * self.matches[n] as f64 / self.totals[n].max(1) as f64)).collect();
        let ratio = self.hyp_len as f64 / self.ref_len.max(1) as f64;
        let bp = if ratio >= 1.0 {
            1.0
        } else if self.hyp_len == 0 {
            0.0
        } else {
            (1.0 - 1.0 / ratio).exp()
        };
        write!(
            f,
            "BLEU = {:.2} {} (BP = {bp:.3} ratio = {ratio:.3} hyp_len = {} ref_len = {})",
            self.score(),
            p.join("/"),
            self.hyp_len,
            self.ref_len
        )
    }
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], u64> {
    let mut m = HashMap::new();
    for g in tokens.windows(n) {
        *m.entry(g).or_default() += 1;
    }
    m
}

/// Corpus BLEU of hypotheses against one reference each.
pub fn corpus_bleu<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> f64 {
    let mut stats = BleuStats::default();
    for (h, r) in pairs {
        stats.add(h, r);
    }
    stats.score()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenization_follows_13a() {
        let t = tokenize_13a("Hello, world! It costs $3.50 (or 1-2 euros). U.S. isn’t \"ok\"");
        let want = "Hello , world ! It costs $ 3.50 ( or 1 - 2 euros ) . U . S . isn’t \" ok \"";
        assert_eq!(t.join(" "), want);
    }

    #[test]
    fn scores_match_sacrebleu() {
        // Values printed by sacrebleu 2.6.0 (corpus_bleu, defaults) for the same text.
        let hyp = ["The cat is on the mat.", "There is a cat on the mat", "I am very hungry today.", "He goes home."];
        let refs = ["The cat sat on the mat.", "A cat is on the mat.", "I am hungry.", "She went home quickly."];
        let s = corpus_bleu(hyp.into_iter().zip(refs));
        assert!((s - 24.947753110492112).abs() < 1e-9, "{s}");
        // sacreBLEU's printed summary of the same corpus, and of a short hypothesis.
        let mut stats = BleuStats::default();
        hyp.into_iter().zip(refs).for_each(|(h, r)| stats.add(h, r));
        assert_eq!(
            stats.to_string(),
            "BLEU = 24.95 70.8/35.0/18.8/8.3 (BP = 1.000 ratio = 1.043 hyp_len = 24 ref_len = 23)"
        );
        let mut short = BleuStats::default();
        short.add("a b", "a b c d e f");
        assert_eq!(
            short.to_string(),
            "BLEU = 0.00 100.0/100.0/0.0/0.0 (BP = 0.135 ratio = 0.333 hyp_len = 2 ref_len = 6)"
        );
        // A zero 4-gram count: the "exp" smoothing.
        let s = corpus_bleu([("a b c d e", "a b c x y z w")]);
        assert!((s - 26.65429557589628).abs() < 1e-9, "{s}");
    }

    #[test]
    fn identical_text_scores_100_and_unrelated_text_low() {
        let refs = ["The cat sat on the mat.", "I am hungry."];
        assert!((corpus_bleu(refs.iter().map(|r| (*r, *r))) - 100.0).abs() < 1e-9);
        // No n-gram in common: only the smoothing keeps it above 0.
        let s = corpus_bleu([("dog runs far away now", "The cat sat on the mat.")]);
        assert!(s > 0.0 && s < 10.0, "{s}");
    }
}
