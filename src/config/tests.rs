use super::*;

fn err(text: &str) -> ConfigError {
    match Config::from_toml(text, "test.toml") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn embedded_default_is_every_role_on_loopback() {
    let c = Config::embedded();
    assert_eq!(c.server.domains, ["localhost"]);
    assert_eq!(c.server.sip_addr, "127.0.0.1:5060".parse().unwrap());
    assert_eq!(c.server.transports, [SipTransport::Udp, SipTransport::Tcp]);
    assert_eq!(c.server.msrp_port, 2855);
    assert_eq!(c.server.state_dir, PathBuf::from("./imrelay-data"));
    assert_eq!(c.server.cores, Cores::All);
    assert!(c.roles.home.enabled && c.roles.group.enabled && c.roles.deferred.enabled);
    assert!(
        c.server.detect_stalls,
        "the stall detector is on unless turned off"
    );
    let off = Config::from_toml(
        &EMBEDDED_DEFAULT.replace(
            "shutdown_grace_ms = 2000",
            "shutdown_grace_ms = 2000\ndetect_stalls = false",
        ),
        "t.toml",
    )
    .unwrap();
    assert!(!off.server.detect_stalls);
    assert_eq!(c.roles.home.mode, Mode::Participating);
}

#[test]
fn effective_config_prints_back_to_the_same_config() {
    let c = Config::embedded();
    let again = Config::from_toml(&c.to_toml(), "printed").unwrap();
    assert_eq!(again, c);
    let mut l = c.clone();
    l.server.cores = Cores::List(vec![0, 1]);
    assert_eq!(Config::from_toml(&l.to_toml(), "printed").unwrap(), l);
}

#[test]
fn unknown_key_names_its_path() {
    let text = EMBEDDED_DEFAULT.replace("msrp_port = 2855", "msrp_port = 2855\nmsrp_prot = 1");
    let e = err(&text);
    assert_eq!(e.key, "server.msrp_prot");
    assert!(e.message.contains("unknown field `msrp_prot`"), "{e}");
    assert!(
        e.to_string().starts_with("test.toml: server.msrp_prot: "),
        "{e}"
    );

    let text = EMBEDDED_DEFAULT.replace("[roles.deferred]", "[roles.deferred]\nquota = 3");
    let e = err(&text);
    assert_eq!(e.key, "roles.deferred.quota");
}

#[test]
fn bad_values_name_the_key_and_the_expectation() {
    let e = err(&EMBEDDED_DEFAULT.replace("\"127.0.0.1:5060\"", "\"127.0.0.1\""));
    assert_eq!(e.key, "server.sip_addr");

    let e = err(&EMBEDDED_DEFAULT.replace("msrp_port = 2855", "msrp_port = 70000"));
    assert_eq!(e.key, "server.msrp_port");

    let e = err(&EMBEDDED_DEFAULT.replace(
        "mode = \"participating\"\n\n[roles.group]",
        "mode = \"proxying\"\n\n[roles.group]",
    ));
    assert_eq!(e.key, "roles.home.mode");
    assert!(e.message.contains("participating"), "{e}");

    let e = err(
        &EMBEDDED_DEFAULT.replace("transports = [\"udp\", \"tcp\"]", "transports = [\"sctp\"]")
    );
    assert_eq!(e.key, "server.transports[0]");

    let e = err(&EMBEDDED_DEFAULT.replace("cores = \"all\"", "cores = \"some\""));
    assert_eq!(e.key, "server.cores");
    assert!(e.message.contains("a number of cores"), "{e}");
    let e = err(&EMBEDDED_DEFAULT.replace("cores = \"all\"", "cores = -1"));
    assert_eq!(e.key, "server.cores");
}

#[test]
fn semantic_checks_name_the_key() {
    let e = err(&EMBEDDED_DEFAULT.replace("domains = [\"localhost\"]", "domains = []"));
    assert_eq!(e.key, "server.domains");
    let e = err(&EMBEDDED_DEFAULT.replace(
        "domains = [\"localhost\"]",
        "domains = [\"ok.example\", \"bad domain\"]",
    ));
    assert_eq!(e.key, "server.domains[1]");
    let e =
        err(&EMBEDDED_DEFAULT.replace("shutdown_grace_ms = 2000", "shutdown_grace_ms = 999999"));
    assert_eq!(e.key, "server.shutdown_grace_ms");
    let e = err(&EMBEDDED_DEFAULT.replace("level = \"info\"", "level = \"loud[\""));
    assert_eq!(e.key, "log.level");
    let e = err(&EMBEDDED_DEFAULT
        .replace("msrp_port = 2855", "msrp_port = 65535")
        .replace("cores = \"all\"", "cores = 2"));
    assert_eq!(e.key, "server.msrp_port");
}

#[test]
fn syntax_errors_are_reported_with_the_source() {
    let e = err("[server\n");
    assert!(e.to_string().starts_with("test.toml: "), "{e}");
}

#[test]
fn flags_override_the_file_and_state_directory_applies_only_to_the_default() {
    let o = Overrides {
        sip_addr: Some("127.0.0.2:0".parse().unwrap()),
        msrp_port: Some(0),
        state_dir: None,
        cores: Some(Cores::Count(1)),
        domain: Some("example.org".into()),
    };
    let c = Config::load(None, &o, Some("/var/lib/imrelay:/var/lib/other")).unwrap();
    assert_eq!(c.server.sip_addr, "127.0.0.2:0".parse().unwrap());
    assert_eq!(c.server.msrp_port, 0);
    assert_eq!(c.server.cores, Cores::Count(1));
    assert_eq!(c.server.domains, ["example.org"]);
    assert_eq!(c.server.state_dir, PathBuf::from("/var/lib/imrelay"));

    let o = Overrides {
        state_dir: Some("/tmp/x".into()),
        ..Default::default()
    };
    let c = Config::load(None, &o, Some("/var/lib/imrelay")).unwrap();
    assert_eq!(c.server.state_dir, PathBuf::from("/tmp/x"));
}

#[test]
fn missing_file_is_a_clear_error() {
    let e = Config::load(
        Some(std::path::Path::new("/nonexistent/imrelay.toml")),
        &Overrides::default(),
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("/nonexistent/imrelay.toml: cannot read configuration file"),
        "{e}"
    );
}

#[test]
fn cores_flag_forms() {
    assert_eq!(Cores::parse_flag("all"), Ok(Cores::All));
    assert_eq!(Cores::parse_flag("2"), Ok(Cores::Count(2)));
    assert_eq!(Cores::parse_flag("0,2-3"), Ok(Cores::List(vec![0, 2, 3])));
    assert!(Cores::parse_flag("3-1").is_err());
    assert!(Cores::parse_flag("x").is_err());
    assert!(Cores::parse_flag("1,,2").is_err());
}

#[test]
fn cores_resolve_against_the_online_set() {
    let online = [0, 1];
    assert_eq!(Cores::All.resolve(&online).unwrap(), [0, 1]);
    assert_eq!(Cores::Count(1).resolve(&online).unwrap(), [0]);
    assert!(Cores::Count(3).resolve(&online).is_err());
    assert!(Cores::Count(0).resolve(&online).is_err());
    assert_eq!(Cores::List(vec![1]).resolve(&online).unwrap(), [1]);
    assert!(Cores::List(vec![5]).resolve(&online).is_err());
    assert!(Cores::List(vec![1, 1]).resolve(&online).is_err());
}

#[test]
fn myself_is_the_domains_and_the_listen_address() {
    let mut c = Config::embedded();
    c.server.aliases = vec!["sip.example.net".into()];
    let id = c.identity();
    assert!(id.is_myself(b"localhost", None));
    assert!(id.is_myself(b"LOCALHOST", Some(5070)));
    assert!(id.is_myself(b"sip.example.net", None));
    assert!(id.is_myself(b"127.0.0.1", None));
    assert!(id.is_myself(b"127.0.0.1", Some(5060)));
    assert!(!id.is_myself(b"127.0.0.1", Some(5070)));
    assert!(!id.is_myself(b"127.0.0.2", None));
    assert!(!id.is_myself(b"example.com", None));
    assert!(!id.is_myself(b"\xff", None));
}

#[test]
fn store_policy_comes_from_the_store_section() {
    // The embedded default ends with [store] then [log]; drop [log] so that keys and the
    // override table can follow [store].
    let text = format!(
        "{}\ndeny = [\"sip:nobody@localhost\"]\n\n[[store.quota_override]]\nrecipient = \"sip:vip@localhost\"\nbytes = 1000000000\nmessages = 99999\n",
        EMBEDDED_DEFAULT.replace("\n[log]\nlevel = \"info\"\n", "").trim_end()
    );
    let c = Config::from_toml(&text, "t").unwrap();
    let p = c.store.policy();
    assert_eq!(p.deny, [b"sip:nobody@localhost".to_vec()]);
    assert_eq!(
        p.quota_overrides,
        [(b"sip:vip@localhost".to_vec(), 1_000_000_000, 99_999)]
    );
    assert_eq!(p.retention_ms, 604_800_000);
    assert_eq!(p.quota_messages, 10_000);
}

#[test]
fn bad_store_values_name_their_key() {
    let e = err(&EMBEDDED_DEFAULT.replace("quota_bytes = 67108864", "quota_bytes = 0"));
    assert_eq!(e.key, "store.quota_bytes");
    let e = err(&EMBEDDED_DEFAULT.replace("retention_secs = 604800", "retention_secs = 99999999"));
    assert_eq!(e.key, "store.retention_secs");
    let e =
        err(&EMBEDDED_DEFAULT.replace("segment_bytes_max = 67108864", "segment_bytes_max = 1024"));
    assert_eq!(e.key, "store.segment_bytes_max");
    let e = err(&EMBEDDED_DEFAULT.replace("quota_messages = 10000", "quota_messages = -1"));
    assert_eq!(e.key, "store.quota_messages");
}

#[test]
fn the_embedded_store_section_states_the_store_defaults() {
    assert_eq!(Config::embedded().store, StoreConfig::default());
    assert_eq!(
        StoreConfig::default().policy(),
        crate::store::core::Policy::default()
    );
}

#[test]
fn routes_name_other_domains_and_their_next_hop() {
    let text = format!(
        "{EMBEDDED_DEFAULT}\n[[route]]\ndomain = \"Example.ORG\"\nnext_hop = \"192.0.2.10:5060\"\n"
    );
    let c = Config::from_toml(&text, "t").unwrap();
    assert_eq!(
        c.identity().routes,
        vec![("example.org".to_owned(), "192.0.2.10:5060".parse().unwrap())]
    );
    assert_eq!(Config::from_toml(&c.to_toml(), "printed").unwrap(), c);
    let e = err(&format!(
        "{EMBEDDED_DEFAULT}\n[[route]]\ndomain = \"localhost\"\nnext_hop = \"192.0.2.10:5060\"\n"
    ));
    assert!(e.to_string().contains("route[0].domain"), "{e}");
    let e = err(&format!(
        "{EMBEDDED_DEFAULT}\n[[route]]\ndomain = \"example.org\"\nnext_hop = \"nowhere\"\n"
    ));
    assert!(e.to_string().contains("route"), "{e}");
}

#[test]
fn the_pager_section_sets_the_retry_waits_and_the_sender_notice() {
    let c = Config::embedded();
    assert_eq!(c.pager, PagerConfig::default());
    assert_eq!(c.identity().notice_from, None);
    let secs = |n| c.pager.retry_after(n).as_secs();
    assert_eq!(
        [
            secs(0),
            secs(1),
            secs(2),
            secs(3),
            secs(6),
            secs(7),
            secs(1000)
        ],
        [30, 30, 60, 120, 960, 1800, 1800]
    );
    let text = EMBEDDED_DEFAULT.replace(
        "[pager]\n",
        "[pager]\nnotice_from = \"sip:imrelay@localhost\"\n",
    );
    let c = Config::from_toml(&text, "t").unwrap();
    assert_eq!(
        c.identity().notice_from.as_deref(),
        Some("sip:imrelay@localhost")
    );
    assert_eq!(Config::from_toml(&c.to_toml(), "printed").unwrap(), c);

    let e = err(&EMBEDDED_DEFAULT.replace("delivery_retry_secs = 30", "delivery_retry_secs = 0"));
    assert_eq!(e.key, "pager.delivery_retry_secs");
    let e = err(&EMBEDDED_DEFAULT.replace(
        "delivery_retry_secs_max = 1800",
        "delivery_retry_secs_max = 10",
    ));
    assert_eq!(e.key, "pager.delivery_retry_secs");
    let e = err(&EMBEDDED_DEFAULT.replace(
        "delivery_retry_secs_max = 1800",
        "delivery_retry_secs_max = 999999",
    ));
    assert_eq!(e.key, "pager.delivery_retry_secs_max");
    let e = err(&EMBEDDED_DEFAULT.replace("[pager]\n", "[pager]\nnotice_from = \"imrelay\"\n"));
    assert_eq!(e.key, "pager.notice_from");
}

#[test]
fn msrp_idle_secs_is_bounded() {
    let with = |v: &str| {
        let text = format!("{EMBEDDED_DEFAULT}\n[msrp]\nidle_secs = {v}\n");
        Config::from_toml(&text, "test.toml")
    };
    assert_eq!(with("30").unwrap().msrp.idle_secs(), 30);
    assert_eq!(
        Config::embedded().msrp.idle_secs(),
        crate::limits::MSRP_IDLE_SECS_DEFAULT
    );
    for bad in ["0", "86401"] {
        let e = with(bad).unwrap_err().to_string();
        assert!(e.contains("msrp.idle_secs"), "{e}");
    }
}

/// The embedded default with `groups` (TOML `[[roles.group.groups]]` tables) added.
fn with_groups(groups: &str) -> String {
    EMBEDDED_DEFAULT.replace("[roles.deferred]", &format!("{groups}\n[roles.deferred]"))
}

fn group(uri: &str, members: &[&str]) -> String {
    let list: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[[roles.group.groups]]\nuri = \"{uri}\"\nmembers = [{}]\n",
        list.join(", ")
    )
}

#[test]
fn groups_are_read_by_address_of_record() {
    let text = with_groups(&group(
        "sip:Team@LOCALHOST",
        &["sip:alice@localhost", "sip:bob@example.com"],
    ));
    let c = Config::from_toml(&text, "test.toml").unwrap();
    let table = c.group_table();
    assert_eq!(table.len(), 1);
    let members = c
        .identity()
        .groups
        .members(b"sip:Team@localhost")
        .expect("the group, by address of record");
    assert_eq!(members.len(), 2);
    // With the group role off there are none.
    let off = text.replacen(
        "[roles.group]\nenabled = true",
        "[roles.group]\nenabled = false",
        1,
    );
    assert!(Config::from_toml(&off, "test.toml")
        .unwrap()
        .group_table()
        .is_empty());
}

#[test]
fn bad_groups_name_the_key_and_why() {
    let cases: [(String, &str, &str); 7] = [
        (
            with_groups(&group("sip:team@elsewhere.example", &["sip:a@localhost"])),
            "roles.group.groups[0].uri",
            "not in one of server.domains",
        ),
        (
            with_groups(&group("tel:+1555", &["sip:a@localhost"])),
            "roles.group.groups[0].uri",
            "not a SIP URI",
        ),
        (
            with_groups(&group("sip:team@localhost", &[])),
            "roles.group.groups[0].members",
            "1 to 100",
        ),
        (
            with_groups(&group(
                "sip:team@localhost",
                &["sip:a@localhost", "sip:a@LocalHost"],
            )),
            "roles.group.groups[0].members[1]",
            "twice",
        ),
        (
            with_groups(&format!(
                "{}{}",
                group(
                    "sip:team@localhost",
                    &["sip:a@localhost", "sip:all@localhost"]
                ),
                group("sip:all@localhost", &["sip:b@localhost"])
            )),
            "roles.group.groups[0].members[1]",
            "groups do not contain groups",
        ),
        (
            with_groups(&format!(
                "{}{}",
                group("sip:team@localhost", &["sip:a@localhost"]),
                group("sip:team@localhost", &["sip:b@localhost"])
            )),
            "roles.group.groups[1].uri",
            "defined twice",
        ),
        (
            EMBEDDED_DEFAULT.replacen(
                "[roles.group]\nenabled = true\nmode = \"participating\"",
                "[roles.group]\nenabled = true\nmode = \"non-participating\"",
                1,
            ),
            "roles.group.mode",
            "always",
        ),
    ];
    for (text, key, why) in cases {
        let e = err(&text);
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(why), "{e}");
    }
    let home_group = group("sip:team@localhost", &["sip:a@localhost"])
        .replace("roles.group.groups", "roles.home.groups");
    let e = err(&EMBEDDED_DEFAULT.replacen(
        "mode = \"participating\"\n\n[roles.group]",
        &format!("mode = \"participating\"\n\n{home_group}\n[roles.group]"),
        1,
    ));
    assert_eq!(e.key, "roles.home.groups", "{e}");
}
