//! `/metrics` in the format the scraper asks for. prometheus-client writes OpenMetrics; a
//! scraper that does not accept it (`Accept` without `application/openmetrics-text`: curl,
//! older agents, `promtool check metrics`) gets Prometheus' text format 0.0.4, where a counter's
//! `# HELP` and `# TYPE` name its `_total` series, an info metric is a gauge named `_info`, and
//! there is no `# UNIT` and no `# EOF`.

/// OpenMetrics' media type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header takes OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The Prometheus text form of OpenMetrics `text`.
pub fn to_prometheus_text(text: &str) -> String {
    let renamed: std::collections::HashMap<&str, (String, &str)> = text
        .lines()
        .filter_map(|line| {
            let (name, kind) = line.strip_prefix("# TYPE ")?.split_once(' ')?;
            match kind {
                "counter" => Some((name, (format!("{name}_total"), "counter"))),
                "info" => Some((name, (format!("{name}_info"), "gauge"))),
                "unknown" => Some((name, (name.to_string(), "untyped"))),
                _ => None,
            }
        })
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            let (new_name, new_kind) = renamed.get(name)?;
            Some(if *prefix == "# TYPE " {
                format!("{prefix}{new_name} {new_kind}")
            } else {
                format!("{prefix}{new_name} {rest}")
            })
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_name_their_total_series_and_openmetrics_only_lines_go() {
        let open = "# HELP weft_dns_answers DNS answers sent.\n\
                    # TYPE weft_dns_answers counter\n\
                    weft_dns_answers_total{source=\"mesh\"} 3\n\
                    # HELP weft_dns_answer_duration_seconds Time to answer.\n\
                    # TYPE weft_dns_answer_duration_seconds histogram\n\
                    # UNIT weft_dns_answer_duration_seconds seconds\n\
                    weft_dns_answer_duration_seconds_count 3\n\
                    # HELP libp2p_identify_agent Agents.\n\
                    # TYPE libp2p_identify_agent info\n\
                    libp2p_identify_agent_info{v=\"a\"} 1\n\
                    # EOF\n";
        assert_eq!(
            to_prometheus_text(open),
            "# HELP weft_dns_answers_total DNS answers sent.\n\
             # TYPE weft_dns_answers_total counter\n\
             weft_dns_answers_total{source=\"mesh\"} 3\n\
             # HELP weft_dns_answer_duration_seconds Time to answer.\n\
             # TYPE weft_dns_answer_duration_seconds histogram\n\
             weft_dns_answer_duration_seconds_count 3\n\
             # HELP libp2p_identify_agent_info Agents.\n\
             # TYPE libp2p_identify_agent_info gauge\n\
             libp2p_identify_agent_info{v=\"a\"} 1\n"
        );
    }

    #[test]
    fn prometheus_asks_for_openmetrics_and_curl_does_not() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
