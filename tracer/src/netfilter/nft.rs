//! Native nftables, read from `nft -j list ruleset` (libnftables-json(5)).
//!
//! The JSON is walked as a [`serde_json::Value`]: whatever statement or expression a newer nft
//! adds still parses, and only shows less nicely in the rule's text. A rule is known by its
//! handle, which nft never changes while the rule exists and never gives to another rule of the
//! same table (a table deleted and made anew starts over: a counter that went down then counts
//! as zeroed, see `counted_since`).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Backend, Chain, Rule};

/// Why `nft -j list ruleset` output could not be read at all. Objects it does not know, or
/// holds in a shape it does not expect, are skipped instead.
#[derive(Debug, thiserror::Error)]
pub enum NftJsonError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no \"nftables\" array")]
    NoRuleset,
}

/// A named object of a table: (family, table, name).
type ObjectKey<'a> = (&'a str, &'a str, &'a str);

/// The named objects rules refer to by name.
#[derive(Default)]
struct Named<'a> {
    /// Named counters' packets.
    counter_packets: HashMap<ObjectKey<'a>, Option<u64>>,
    /// How many rules refer to each named counter: one shared by several cannot tell which of
    /// them counted.
    counter_users: HashMap<ObjectKey<'a>, usize>,
    /// Named verdict maps, and whether `drop` is among their verdicts.
    verdict_map_drops: HashMap<ObjectKey<'a>, bool>,
}

/// Parses `nft -j list ruleset`: every chain (hook, type and policy for base chains) and every
/// rule, with its handle, position, counter, whether it drops, and a text in nft's syntax that
/// leaves out what changes while traffic flows (counter values, a quota's usage).
///
/// A rule drops when one of its statements is `drop`, `reject`, an xtables `DROP` or `REJECT`
/// target, or a verdict map (`vmap`, anonymous or named) with `drop` among its verdicts. Its
/// counter (its own, or a named counter no other rule uses) counts its drops only when nothing
/// but `log` and other counters stands between it and the verdict: a counter in front of a
/// match, a quota or a limit counts packets the rule then lets through, and a verdict map's
/// counter counts every packet the map looked up, accepted ones too. Such dropping rules are
/// candidates, never counted hits ([`Rule::counts_drops`]).
pub fn parse_nft_json(text: &str) -> Result<(Vec<Rule>, Vec<Chain>), NftJsonError> {
    let document: Value = serde_json::from_str(text)?;
    let objects = document
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or(NftJsonError::NoRuleset)?;
    let named = named_objects(objects);
    let mut rules = Vec::new();
    let mut chains = Vec::new();
    let mut positions: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for object in objects {
        if let Some(chain) = object.get("chain") {
            chains.extend(parse_chain(chain));
        } else if let Some(rule) = object.get("rule") {
            let Some(place @ (family, table, chain)) = place_of(rule, "chain") else {
                continue;
            };
            let position = positions.entry(place).or_default();
            *position += 1;
            rules.push(parse_rule(rule, (family, table, chain), *position, &named));
        }
    }
    Ok((rules, chains))
}

/// The three strings naming where an object lives: family, table, and `name_field`.
fn place_of<'a>(object: &'a Value, name_field: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let field = |name: &str| object.get(name).and_then(Value::as_str);
    Some((field("family")?, field("table")?, field(name_field)?))
}

fn named_objects(objects: &[Value]) -> Named<'_> {
    let mut named = Named::default();
    for object in objects {
        if let Some(counter) = object.get("counter")
            && let Some(key) = place_of(counter, "name")
        {
            let packets = counter.get("packets").and_then(Value::as_u64);
            named.counter_packets.insert(key, packets);
        } else if let Some(map) = object.get("map")
            && let Some(key) = place_of(map, "name")
            && map.get("map").and_then(Value::as_str) == Some("verdict")
        {
            let drops = map
                .get("elem")
                .and_then(Value::as_array)
                .is_some_and(|elements| elements.iter().any(map_element_drops));
            named.verdict_map_drops.insert(key, drops);
        } else if let Some(rule) = object.get("rule")
            && let Some((family, table, _)) = place_of(rule, "chain")
        {
            for statement in statements(rule) {
                if let Some(name) = statement.get("counter").and_then(Value::as_str) {
                    *named
                        .counter_users
                        .entry((family, table, name))
                        .or_default() += 1;
                }
            }
        }
    }
    named
}

/// A rule's statements, in order.
fn statements(rule: &Value) -> impl Iterator<Item = &Map<String, Value>> {
    rule.get("expr")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn parse_chain(chain: &Value) -> Option<Chain> {
    let (family, table, name) = place_of(chain, "name")?;
    let text = |field: &str| chain.get(field).and_then(Value::as_str).map(str::to_owned);
    Some(Chain {
        backend: Backend::Nft,
        family: family.to_owned(),
        table: table.to_owned(),
        name: name.to_owned(),
        hook: text("hook"),
        chain_type: text("type"),
        policy_drop: chain.get("policy").and_then(Value::as_str) == Some("drop"),
        policy_packets: None,
    })
}

fn parse_rule(
    rule: &Value,
    (family, table, chain): (&str, &str, &str),
    position: usize,
    named: &Named,
) -> Rule {
    let statements: Vec<(&str, &Value)> = statements(rule)
        .filter_map(|statement| statement.iter().next())
        .map(|(name, value)| (name.as_str(), value))
        .collect();
    let verdict_drops = |(name, value): &(&str, &Value)| match *name {
        "drop" | "reject" => true,
        "xt" => {
            value.get("type").and_then(Value::as_str) == Some("target")
                && matches!(
                    value.get("name").and_then(Value::as_str),
                    Some("DROP" | "REJECT")
                )
        }
        _ => false,
    };
    let vmap_drops = |(name, value): &(&str, &Value)| {
        *name == "vmap"
            && match value.get("data") {
                Some(Value::String(reference)) => reference.strip_prefix('@').is_some_and(|map| {
                    named
                        .verdict_map_drops
                        .get(&(family, table, map))
                        .copied()
                        .unwrap_or(false)
                }),
                Some(data) => data
                    .get("set")
                    .and_then(Value::as_array)
                    .is_some_and(|elements| elements.iter().any(map_element_drops)),
                None => false,
            }
    };
    let counter_at = statements.iter().position(|(name, _)| *name == "counter");
    let packets = counter_at.and_then(|at| match statements[at].1 {
        Value::String(name) => {
            let key = (family, table, name.as_str());
            let users = named.counter_users.get(&key).copied().unwrap_or(0);
            if users == 1 {
                named.counter_packets.get(&key).copied().flatten()
            } else {
                None
            }
        }
        counter => counter.get("packets").and_then(Value::as_u64),
    });
    // The counter counts drops when only logging and counting stand between it and the verdict.
    let counts_drops = packets.is_some()
        && counter_at.is_some_and(|at| {
            let after = &statements[at + 1..];
            let verdict = after.iter().position(verdict_drops);
            verdict.is_some_and(|verdict| {
                after[..verdict]
                    .iter()
                    .all(|(name, _)| matches!(*name, "counter" | "log"))
            })
        });
    let mut text: Vec<String> = statements
        .iter()
        .map(|(name, value)| statement_text(name, value))
        .filter(|part| !part.is_empty())
        .collect();
    if let Some(comment) = rule.get("comment").and_then(Value::as_str) {
        text.push(format!("comment \"{comment}\""));
    }
    Rule {
        backend: Backend::Nft,
        family: family.to_owned(),
        table: table.to_owned(),
        chain: chain.to_owned(),
        handle: rule.get("handle").and_then(Value::as_u64),
        text: text.join(" "),
        position,
        packets,
        drops: statements.iter().any(|s| verdict_drops(s) || vmap_drops(s)),
        counts_drops,
    }
}

/// A verdict map's element `[key, verdict]` whose verdict is `drop`.
fn map_element_drops(element: &Value) -> bool {
    element
        .as_array()
        .and_then(|pair| pair.get(1))
        .is_some_and(|verdict| verdict.get("drop").is_some())
}

/// Meta keys nft writes without `meta`.
const UNQUALIFIED_META: [&str; 6] = ["iif", "oif", "iifname", "oifname", "iifgroup", "oifgroup"];

/// Meta keys whose values are names, which nft writes in quotes.
fn is_name_meta(key: &str) -> bool {
    matches!(
        key,
        "iifname" | "oifname" | "ibrname" | "obrname" | "ibriport" | "obriport" | "sdifname"
    )
}

/// One statement as nft writes it, without the values that change as traffic flows.
fn statement_text(name: &str, value: &Value) -> String {
    let field = |field: &str| value.get(field).map(expression).unwrap_or_default();
    match name {
        "match" => {
            let left = value.get("left").unwrap_or(&Value::Null);
            let quoted = left
                .get("meta")
                .and_then(|meta| meta.get("key"))
                .and_then(Value::as_str)
                .is_some_and(is_name_meta);
            let right = value.get("right").map_or_else(String::new, |right| {
                if quoted {
                    quote_strings(right)
                } else {
                    flags_or_expression(right)
                }
            });
            match value.get("op").and_then(Value::as_str) {
                None | Some("==" | "in") => format!("{} {right}", expression(left)),
                Some(op) => format!("{} {op} {right}", expression(left)),
            }
        }
        "counter" => match value {
            Value::String(counter) => format!("counter name \"{counter}\""),
            _ => "counter".to_owned(),
        },
        // Its usage changes as traffic flows.
        "last" => "last".to_owned(),
        "quota" => {
            let over = if value.get("inv").and_then(Value::as_bool) == Some(true) {
                "over "
            } else {
                ""
            };
            format!("quota {over}{} {}", field("val"), field("val_unit"))
        }
        "limit" => {
            let over = if value.get("inv").and_then(Value::as_bool) == Some(true) {
                "over "
            } else {
                ""
            };
            let unit = match value.get("rate_unit").and_then(Value::as_str) {
                None | Some("packets") => String::new(),
                Some(unit) => format!(" {unit}"),
            };
            let mut text = format!("limit rate {over}{}{unit}/{}", field("rate"), field("per"));
            if let Some(burst) = value.get("burst").and_then(Value::as_u64)
                && burst > 0
            {
                text.push_str(&format!(" burst {burst} {}", field("burst_unit")));
            }
            text
        }
        "reject" => match value.get("type") {
            None => "reject".to_owned(),
            Some(kind) => {
                let mut text = format!("reject with {}", expression(kind));
                if let Some(code) = value.get("expr") {
                    text.push(' ');
                    text.push_str(&expression(code));
                }
                text
            }
        },
        "log" => {
            let mut text = "log".to_owned();
            for (key, value) in value.as_object().into_iter().flatten() {
                match value {
                    Value::String(string) if key == "prefix" => {
                        text.push_str(&format!(" prefix \"{string}\""));
                    }
                    _ => text.push_str(&format!(" {key} {}", expression(value))),
                }
            }
            text
        }
        "vmap" => format!("{} vmap {}", field("key"), field("data")),
        "mangle" => format!("{} set {}", field("key"), field("value")),
        "snat" | "dnat" | "masquerade" | "redirect" => {
            let mut text = name.to_owned();
            let address = value.get("addr").map(expression);
            let port = value.get("port").map(expression);
            if address.is_some() || port.is_some() {
                text.push_str(" to ");
                text.push_str(&address.unwrap_or_default());
                if let Some(port) = port {
                    text.push(':');
                    text.push_str(&port);
                }
            }
            text
        }
        "set" | "map" => format!(
            "{} {} {{ {} }}",
            field("op"),
            field(if name == "set" { "set" } else { "map" }),
            field("elem")
        ),
        "xt" => format!("xt {} \"{}\"", field("type"), field("name")),
        _ => object_text(name, value),
    }
}

/// A match's right side: a bare list is a set of flags, `established,related`.
fn flags_or_expression(value: &Value) -> String {
    match value {
        Value::Array(flags) => flags.iter().map(expression).collect::<Vec<_>>().join(","),
        _ => expression(value),
    }
}

/// Names, as nft writes them: in quotes, a set of them too.
fn quote_strings(value: &Value) -> String {
    match value {
        Value::String(name) if !name.starts_with('@') => format!("\"{name}\""),
        Value::Object(object) => match object.get("set").and_then(Value::as_array) {
            Some(names) => set_text(names.iter().map(quote_strings)),
            None => expression(value),
        },
        _ => expression(value),
    }
}

fn set_text(elements: impl Iterator<Item = String>) -> String {
    format!("{{ {} }}", elements.collect::<Vec<_>>().join(", "))
}

/// An expression as nft writes it. Anything unknown is written as its keys and values.
fn expression(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(value) => value.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(string) => string.clone(),
        Value::Array(items) => items.iter().map(expression).collect::<Vec<_>>().join(" "),
        Value::Object(object) => match object.iter().next() {
            Some((name, inner)) if object.len() == 1 => expression_object(name, inner),
            _ => object
                .iter()
                .map(|(key, value)| format!("{key} {}", expression(value)))
                .collect::<Vec<_>>()
                .join(" "),
        },
    }
}

fn expression_object(name: &str, value: &Value) -> String {
    let field = |field: &str| value.get(field).map(expression).unwrap_or_default();
    let pair = |separator: &str| match value.as_array().map(Vec::as_slice) {
        Some([left, right]) => format!("{}{separator}{}", expression(left), expression(right)),
        _ => object_text(name, value),
    };
    match name {
        "payload" if value.get("protocol").is_some() => {
            format!("{} {}", field("protocol"), field("field"))
        }
        "payload" => format!("@{},{},{}", field("base"), field("offset"), field("len")),
        "meta" => {
            let key = field("key");
            if UNQUALIFIED_META.contains(&key.as_str()) {
                key
            } else {
                format!("meta {key}")
            }
        }
        "ct" => {
            let mut text = "ct".to_owned();
            for part in ["family", "dir", "key"] {
                if let Some(part) = value.get(part) {
                    text.push(' ');
                    text.push_str(&expression(part));
                }
            }
            text
        }
        "prefix" => format!("{}/{}", field("addr"), field("len")),
        "range" => pair("-"),
        "set" => match value {
            Value::Array(elements) => set_text(elements.iter().map(set_element)),
            other => set_text(std::iter::once(expression(other))),
        },
        "map" => format!("{} map {}", field("key"), field("data")),
        "concat" => match value {
            Value::Array(parts) => parts.iter().map(expression).collect::<Vec<_>>().join(" . "),
            other => expression(other),
        },
        "elem" => field("val"),
        "&" | "|" | "^" | "<<" | ">>" => pair(&format!(" {name} ")),
        "fib" => {
            let flags = match value.get("flags") {
                Some(Value::Array(flags)) => {
                    flags.iter().map(expression).collect::<Vec<_>>().join(" . ")
                }
                Some(flag) => expression(flag),
                None => String::new(),
            };
            format!("fib {flags} {}", field("result"))
        }
        _ => object_text(name, value),
    }
}

/// A set's element; a map's is `key : value`.
fn set_element(element: &Value) -> String {
    match element.as_array().map(Vec::as_slice) {
        Some([key, value]) => format!("{} : {}", expression(key), expression(value)),
        _ => expression(element),
    }
}

/// What nft has no special syntax for here: its name, then its value (verdicts: `accept`,
/// `jump deny`; statements: `notrack`, `queue num 3`).
fn object_text(name: &str, value: &Value) -> String {
    let value = match value {
        Value::Object(object) if object.len() == 1 && object.contains_key("target") => {
            expression(&object["target"])
        }
        Value::Object(object) => object
            .iter()
            .map(|(key, value)| format!("{key} {}", expression(value)))
            .collect::<Vec<_>>()
            .join(" "),
        other => expression(other),
    };
    if value.is_empty() {
        name.to_owned()
    } else {
        format!("{name} {value}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const BEFORE: &str = include_str!("fixtures/nft_before.json");
    const AFTER: &str = include_str!("fixtures/nft_after.json");

    fn parse(json: &str) -> (Vec<Rule>, Vec<Chain>) {
        parse_nft_json(json).expect("the fixture is nft's JSON")
    }

    /// (chain, handle, position, text, packets, drops, counts_drops) of a table's rules.
    type Summary<'a> = (
        &'a str,
        Option<u64>,
        usize,
        &'a str,
        Option<u64>,
        bool,
        bool,
    );

    fn summary<'a>(rules: &'a [Rule], table: &str) -> Vec<Summary<'a>> {
        rules
            .iter()
            .filter(|rule| rule.table == table)
            .map(|rule| {
                (
                    rule.chain.as_str(),
                    rule.handle,
                    rule.position,
                    rule.text.as_str(),
                    rule.packets,
                    rule.drops,
                    rule.counts_drops,
                )
            })
            .collect()
    }

    #[test]
    fn parses_rules_of_nft_json() {
        let (rules, _) = parse(AFTER);
        assert_eq!(
            summary(&rules, "guard"),
            [
                ("deny", Some(8), 1, "counter drop", Some(0), true, true),
                // Without counters; a quota is no counter.
                ("out", Some(9), 1, "tcp dport 4420 drop", None, true, false),
                (
                    "out",
                    Some(10),
                    2,
                    "meta l4proto udp quota over 10 mbytes drop",
                    None,
                    true,
                    false
                ),
                (
                    "out",
                    Some(11),
                    3,
                    "udp dport 9 counter drop",
                    Some(1),
                    true,
                    true
                ),
                // A named counter of one rule counts for it; one two rules share cannot.
                (
                    "out",
                    Some(12),
                    4,
                    r#"udp dport 12 counter name "probes" drop"#,
                    Some(2),
                    true,
                    true
                ),
                (
                    "out",
                    Some(13),
                    5,
                    r#"udp dport 13 counter name "shared" drop"#,
                    None,
                    true,
                    false
                ),
                (
                    "out",
                    Some(14),
                    6,
                    r#"udp dport 14 counter name "shared" drop"#,
                    None,
                    true,
                    false
                ),
                (
                    "out",
                    Some(15),
                    7,
                    r#"ip daddr 10.9.0.1 counter accept comment "to peer; drop nothing""#,
                    Some(2),
                    false,
                    false
                ),
                (
                    "in",
                    Some(16),
                    1,
                    "ct state established,related accept",
                    None,
                    false,
                    false
                ),
                (
                    "in",
                    Some(17),
                    2,
                    r#"iifname "lo" accept"#,
                    None,
                    false,
                    false
                ),
                (
                    "in",
                    Some(18),
                    3,
                    "ip saddr 10.9.0.0/24 counter accept",
                    Some(7),
                    false,
                    false
                ),
                // An anonymous set.
                (
                    "in",
                    Some(20),
                    4,
                    "tcp dport { 22, 4420 } counter reject with tcp reset",
                    Some(0),
                    true,
                    true
                ),
                (
                    "in",
                    Some(21),
                    5,
                    "ip saddr 10.8.0.99 jump deny",
                    None,
                    false,
                    false
                ),
                // A named set.
                (
                    "in",
                    Some(22),
                    6,
                    "ip saddr @blocked drop",
                    None,
                    true,
                    false
                ),
                (
                    "in",
                    Some(23),
                    7,
                    r#"meta l4proto tcp log prefix "drop: " drop comment "drop # handle 5""#,
                    None,
                    true,
                    false
                ),
                // Verdict maps drop when `drop` is among their verdicts, anonymous or named.
                (
                    "in",
                    Some(25),
                    8,
                    "udp dport vmap { 5000 : drop, 5001 : accept }",
                    None,
                    true,
                    false
                ),
                (
                    "in",
                    Some(26),
                    9,
                    "udp dport vmap @ports",
                    None,
                    true,
                    false
                ),
                (
                    "in",
                    Some(28),
                    10,
                    "tcp dport vmap { 7000 : accept, 7001 : jump deny }",
                    None,
                    false,
                    false
                ),
            ]
        );
        assert_eq!(
            summary(&rules, "edge"),
            [(
                "lo_in",
                Some(2),
                1,
                "udp dport 7 counter drop",
                Some(1),
                true,
                true
            )]
        );
        assert_eq!(
            summary(&rules, "raw"),
            [(
                "PREROUTING",
                Some(2),
                1,
                "udp dport 7 counter drop",
                Some(1),
                true,
                true
            )]
        );
        // iptables-nft's tables, as nft shows them: xtables matches and targets by name.
        let reject = summary(&rules, "filter")
            .into_iter()
            .find(|rule| rule.0 == "SPDK_BLOCK");
        assert_eq!(
            reject,
            Some((
                "SPDK_BLOCK",
                Some(5),
                1,
                r#"udp dport 9 counter xt target "REJECT""#,
                Some(2),
                true,
                true
            ))
        );
        let arp = rules
            .iter()
            .find(|rule| rule.family == "arp" && rule.chain == "INPUT")
            .map(|rule| rule.text.as_str());
        assert_eq!(
            arp,
            Some("arp htype 1 arp hlen 6 arp plen 4 arp saddr ip 10.9.0.3 counter drop")
        );
        assert!(rules.iter().all(|rule| rule.backend == Backend::Nft));
        assert_eq!(rules.len(), 27);
    }

    #[test]
    fn parses_chains_of_nft_json() {
        let (_, chains) = parse(AFTER);
        let find = |table: &str, name: &str| {
            chains
                .iter()
                .find(|chain| chain.table == table && chain.name == name)
                .unwrap_or_else(|| panic!("no chain {table}/{name} in {chains:#?}"))
        };
        assert_eq!(
            find("guard", "in"),
            &Chain {
                backend: Backend::Nft,
                family: "inet".to_owned(),
                table: "guard".to_owned(),
                name: "in".to_owned(),
                hook: Some("input".to_owned()),
                chain_type: Some("filter".to_owned()),
                policy_drop: true,
                policy_packets: None,
            }
        );
        let deny = find("guard", "deny");
        assert_eq!(
            (
                deny.hook.as_deref(),
                deny.chain_type.as_deref(),
                deny.policy_drop
            ),
            (None, None, false)
        );
        let out = find("guard", "out");
        assert_eq!(
            (out.hook.as_deref(), out.policy_drop),
            (Some("output"), false)
        );
        let ingress = find("edge", "lo_in");
        assert_eq!(
            (ingress.family.as_str(), ingress.hook.as_deref()),
            ("netdev", Some("ingress"))
        );
        // The iptables-nft tables are there too; sets, maps and counters are no chains.
        let tables: BTreeSet<(&str, &str)> = chains
            .iter()
            .map(|chain| (chain.family.as_str(), chain.table.as_str()))
            .collect();
        assert_eq!(
            tables.into_iter().collect::<Vec<_>>(),
            [
                ("arp", "filter"),
                ("inet", "guard"),
                ("ip", "filter"),
                ("ip", "raw"),
                ("ip6", "filter"),
                ("netdev", "edge"),
            ]
        );
        assert_eq!(chains.len(), 12);
    }

    #[test]
    fn rules_keep_their_handle_and_text_while_traffic_flows() {
        let keys = |json| -> Vec<(String, String, Option<u64>, usize, String)> {
            let (rules, _) = parse(json);
            rules
                .into_iter()
                .map(|rule| {
                    (
                        rule.table,
                        rule.chain,
                        rule.handle,
                        rule.position,
                        rule.text,
                    )
                })
                .collect()
        };
        assert_eq!(keys(BEFORE), keys(AFTER));
    }

    #[test]
    fn what_is_not_a_ruleset_is_an_error() {
        assert!(matches!(
            parse_nft_json("table ip filter {"),
            Err(NftJsonError::Json(_))
        ));
        assert!(matches!(
            parse_nft_json(r#"{"rules": []}"#),
            Err(NftJsonError::NoRuleset)
        ));
        // An empty namespace.
        let empty = parse_nft_json(
            r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}"#,
        );
        assert_eq!(empty.ok(), Some((Vec::new(), Vec::new())));
    }

    #[test]
    fn unknown_statements_are_shown_by_name_and_value() {
        let json = r#"{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c",
            "handle": 7, "expr": [
              {"match": {"op": "!=", "left": {"meta": {"key": "mark"}}, "right": 3}},
              {"match": {"op": "==", "left": {"meta": {"key": "oifname"}},
                         "right": {"set": ["eth0", "eth1"]}}},
              {"limit": {"rate": 10, "per": "second", "burst": 5, "burst_unit": "packets"}},
              {"queue": {"num": 3}},
              {"frobnicate": {"level": {"range": [1, 2]}}},
              {"goto": {"target": "elsewhere"}}]}}]}"#;
        let (rules, _) = parse(json);
        assert_eq!(
            rules[0].text,
            r#"meta mark != 3 oifname { "eth0", "eth1" } limit rate 10/second burst 5 packets queue num 3 frobnicate level 1-2 goto elsewhere"#
        );
        assert!(!rules[0].drops);
        assert_eq!(rules[0].handle, Some(7));
    }

    #[test]
    fn a_counter_in_front_of_a_match_does_not_count_drops() {
        let json = r#"{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c",
            "handle": 2, "expr": [
              {"counter": {"packets": 9, "bytes": 900}},
              {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                         "right": 9}},
              {"drop": null}]}}]}"#;
        let (rules, _) = parse(json);
        assert_eq!(rules[0].text, "counter udp dport 9 drop");
        assert_eq!(
            (rules[0].packets, rules[0].drops, rules[0].counts_drops),
            (Some(9), true, false)
        );
    }
}
