//! Datasets: the real tweet-sentiment files (the repository's sample), every validation error with its line,
//! label maps, seeded shuffles and subsets, and Hub splits (offline, in a child
//! process so no environment variable leaks into other tests).

use std::path::{Path, PathBuf};
use std::process::Command;

use tuneserve::data::{
    fetch_hub_split, load_hub_split, select_indices, shuffled_indices_in_stream, Dataset,
    DatasetError, DatasetFormat, Example, ParseOptions, RowError,
};

fn tweets(file: &str) -> PathBuf {
    crate::fixtures::tweets_file(file)
}

fn parse(text: &str, format: DatasetFormat) -> Result<Dataset, DatasetError> {
    Dataset::from_bytes(text.as_bytes(), format, &ParseOptions::default())
}

fn jsonl(text: &str) -> Result<Dataset, DatasetError> {
    parse(text, DatasetFormat::Jsonl)
}

fn csv(text: &str) -> Result<Dataset, DatasetError> {
    parse(text, DatasetFormat::Csv)
}

/// The row errors of an `Invalid` result, as `(line, field, message)`.
fn row_errors(result: Result<Dataset, DatasetError>) -> Vec<(usize, String, String)> {
    match result {
        Err(DatasetError::Invalid { errors, .. }) => errors
            .into_iter()
            .map(|e| (e.line, e.field, e.message))
            .collect(),
        other => panic!("expected row errors, got {other:?}"),
    }
}

/// Asserts exactly one row error, at `line` on `field`, whose message contains `needle`.
fn assert_one_error(result: Result<Dataset, DatasetError>, line: usize, field: &str, needle: &str) {
    let errors = row_errors(result);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (got_line, got_field, message) = &errors[0];
    assert_eq!((*got_line, got_field.as_str()), (line, field), "{message}");
    assert!(message.contains(needle), "`{message}` lacks `{needle}`");
}

const NAMES: [&str; 3] = ["negative", "neutral", "positive"];

// ---- the real files -------------------------------------------------------------

#[test]
fn real_train_jsonl() {
    let ds = Dataset::from_path(&tweets("train.jsonl"), None, &ParseOptions::default()).unwrap();
    assert_eq!(ds.len(), 2_999);
    assert_eq!(ds.labels, NAMES);
    assert_eq!(ds.label_counts(), [855, 1_179, 965]);
    assert_eq!(ds.named_label_counts()[1], ("neutral", 1_179));
    assert!(ds.dropped.is_empty());
    assert_eq!(ds.examples[0].text, " I`d have responded, if I were going");
    assert_eq!(ds.examples[0].label, 1);
}

#[test]
fn real_test_jsonl_and_csv_agree() {
    let opts = ParseOptions::default();
    let from_jsonl = Dataset::from_path(&tweets("test.jsonl"), None, &opts).unwrap();
    let from_csv = Dataset::from_path(&tweets("test.csv"), None, &opts).unwrap();
    assert_eq!(from_jsonl.len(), 3_534);
    assert_eq!(from_jsonl.label_counts(), [1_001, 1_430, 1_103]);
    assert_eq!(from_csv, from_jsonl);
}

#[test]
fn real_train_csv_drops_its_one_empty_row_and_matches_the_jsonl() {
    let opts = ParseOptions {
        drop_empty_text: true,
        ..Default::default()
    };
    let from_csv = Dataset::from_path(&tweets("train.csv"), None, &opts).unwrap();
    assert_eq!(from_csv.dropped, [316], "textID fdb77c3752 is on line 316");
    assert_eq!(from_csv.len(), 2_999);
    assert_eq!(from_csv.labels, NAMES);
    assert_eq!(from_csv.label_counts(), [855, 1_179, 965]);
    let from_jsonl =
        Dataset::from_path(&tweets("train.jsonl"), None, &ParseOptions::default()).unwrap();
    assert_eq!(from_csv.examples, from_jsonl.examples);
}

#[test]
fn real_train_csv_without_dropping_reports_line_316() {
    let result = Dataset::from_path(&tweets("train.csv"), None, &ParseOptions::default());
    assert_one_error(result, 316, "text", "is empty");
}

#[test]
fn missing_file_is_a_read_error() {
    let err = Dataset::from_path(Path::new("/nonexistent/x.jsonl"), None, &Default::default())
        .unwrap_err();
    assert!(matches!(err, DatasetError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/x.jsonl"), "{err}");
}

// ---- one test per error kind ------------------------------------------------------

const OK_A: &str = r#"{"text":"good","label":"pos"}"#;
const OK_B: &str = r#"{"text":"bad","label":"neg"}"#;

#[test]
fn empty_text_jsonl() {
    let data = format!("{OK_A}\n{OK_B}\n{{\"text\":\"\",\"label\":\"pos\"}}\n");
    let err = jsonl(&data).unwrap_err();
    assert!(err.to_string().contains("line 3: text: is empty"), "{err}");
    assert_one_error(jsonl(&data), 3, "text", "is empty");
    let data = format!("{OK_A}\n{{\"text\":\" \\t \",\"label\":\"pos\"}}\n{OK_B}\n");
    assert_one_error(jsonl(&data), 2, "text", "is empty (whitespace only)");
}

#[test]
fn empty_text_csv_counts_the_header_as_line_1() {
    assert_one_error(csv("text,label\na,x\n  ,y\nb,y\n"), 3, "text", "is empty");
}

#[test]
fn missing_or_mistyped_text() {
    let data = format!("{OK_A}\n{OK_B}\n{{\"label\":\"pos\"}}\n");
    assert_one_error(jsonl(&data), 3, "text", "is missing");
    let data = format!("{{\"text\":5,\"label\":\"pos\"}}\n{OK_A}\n{OK_B}\n");
    assert_one_error(jsonl(&data), 1, "text", "must be a string, found a number");
}

#[test]
fn missing_label() {
    let data = format!("{OK_A}\n{{\"text\":\"x\"}}\n{OK_B}\n");
    assert_one_error(jsonl(&data), 2, "label", "is missing");
    let data = format!("{OK_A}\n{{\"text\":\"x\",\"label\":null}}\n{OK_B}\n");
    assert_one_error(jsonl(&data), 2, "label", "is missing");
    assert_one_error(csv("text,label\na,x\nb,\nc,y\n"), 3, "label", "is missing");
}

#[test]
fn bad_label_values() {
    let data = format!("{OK_A}\n{OK_B}\n{{\"text\":\"x\",\"label\":-1}}\n");
    assert_one_error(jsonl(&data), 3, "label", "-1 is not a label id");
    let data = format!("{OK_A}\n{OK_B}\n{{\"text\":\"x\",\"label\":true}}\n");
    assert_one_error(jsonl(&data), 3, "label", "found a boolean");
}

#[test]
fn unknown_label_with_a_given_map() {
    let names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    let opts = ParseOptions {
        labels: Some(&names),
        ..Default::default()
    };
    let data = "{\"text\":\"a\",\"label\":\"negative\"}\n\n{\"text\":\"b\",\"label\":\"angry\"}\n\
                {\"text\":\"c\",\"label\":3}\n{\"text\":\"d\",\"label\":2}\n";
    let errors = row_errors(Dataset::from_bytes(
        data.as_bytes(),
        DatasetFormat::Jsonl,
        &opts,
    ));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!((errors[0].0, errors[0].1.as_str()), (3, "label"));
    assert!(
        errors[0].2.starts_with("unknown label `angry`"),
        "{}",
        errors[0].2
    );
    assert!(errors[0].2.contains("`negative`, `neutral`, `positive`"));
    assert_eq!(errors[1].0, 4);
    assert!(
        errors[1].2.starts_with("unknown label 3"),
        "{}",
        errors[1].2
    );
}

#[test]
fn bad_json_and_non_objects() {
    let data = format!("{OK_A}\n{{\"text\": \"x\", \"label\": }}\n{OK_B}\n");
    assert_one_error(jsonl(&data), 2, "row", "bad JSON at column");
    let data = format!("{OK_A}\n{OK_B}\n[1, 2]\n");
    assert_one_error(
        jsonl(&data),
        3,
        "row",
        "expected a JSON object, found an array",
    );
}

#[test]
fn bad_csv_quoting() {
    let data = "id,text,label\n1,a,x\n2,\"hello\" world,y\n3,b,y\n";
    assert_one_error(
        csv(data),
        3,
        "text",
        "bad CSV quoting: text after the closing quote",
    );
    let data = "id,text,label\n1,a,x\n2,b,y\n3,\"never closed,y\n4,c,y\n";
    assert_one_error(csv(data), 4, "text", "never closed");
}

#[test]
fn wrong_column_count() {
    let data = "id,text,label\n1,a,x\n2,b\n3,c,y,extra\n4,d,y\n";
    let errors = row_errors(csv(data));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!((errors[0].0, errors[0].1.as_str()), (3, "row"));
    assert_eq!(
        errors[0].2,
        "wrong column count: expected 3 fields (id, text, label), found 2"
    );
    assert_eq!(errors[1].0, 4);
    assert!(errors[1].2.ends_with("found 4"));
}

#[test]
fn csv_header_without_text_or_label_column() {
    let errors = row_errors(csv("id,body,stars\n1,a,x\n"));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!((errors[0].0, errors[0].1.as_str()), (1, "text"));
    assert!(errors[0]
        .2
        .contains("no `text` column (found: id, body, stars)"));
    assert_eq!((errors[1].0, errors[1].1.as_str()), (1, "label"));
    assert!(errors[1].2.contains("no `label` or `sentiment` column"));
}

#[test]
fn wrong_encoding() {
    let mut data = format!("{OK_A}\n{OK_B}\n").into_bytes();
    data.extend_from_slice(b"{\"text\":\"caf\xE9\",\"label\":\"pos\"}\n");
    let result = Dataset::from_bytes(&data, DatasetFormat::Jsonl, &Default::default());
    assert_one_error(
        result,
        3,
        "row",
        "wrong encoding: not valid UTF-8 (at byte 13",
    );
    let data = b"text,label\na,x\nb\xFF\xFE,y\n";
    let result = Dataset::from_bytes(data, DatasetFormat::Csv, &Default::default());
    assert_one_error(result, 3, "text", "wrong encoding");
    let utf16 = b"\xFF\xFEt\0e\0x\0t\0";
    let result = Dataset::from_bytes(utf16, DatasetFormat::Csv, &Default::default());
    assert_one_error(result, 1, "row", "the file is UTF-16");
}

#[test]
fn no_rows() {
    for (data, format) in [
        ("", DatasetFormat::Jsonl),
        ("\n \n\r\n", DatasetFormat::Jsonl),
        ("", DatasetFormat::Csv),
        ("text,label\n", DatasetFormat::Csv),
    ] {
        let err = parse(data, format).unwrap_err();
        assert!(
            matches!(err, DatasetError::NoRows { dropped: 0 }),
            "{data:?}: {err:?}"
        );
        assert_eq!(err.to_string(), "the dataset has no rows");
    }
    let opts = ParseOptions {
        drop_empty_text: true,
        ..Default::default()
    };
    let err = Dataset::from_bytes(b"text,label\n,x\n", DatasetFormat::Csv, &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the dataset has no rows (1 with empty text were dropped)"
    );
}

#[test]
fn single_class() {
    let err = csv("text,sentiment\na,neutral\nb,neutral\n").unwrap_err();
    assert!(matches!(&err, DatasetError::SingleClass { label } if label == "neutral"));
    assert!(err.to_string().contains("at least two classes"), "{err}");
}

#[test]
fn integer_labels_with_gaps() {
    let err = jsonl("{\"text\":\"a\",\"label\":0}\n{\"text\":\"b\",\"label\":3}\n").unwrap_err();
    assert!(matches!(&err, DatasetError::LabelGaps { max: 3, missing } if missing == &[1, 2]));
    assert!(err.to_string().contains("1, 2 are missing"), "{err}");
}

#[test]
fn inconsistent_label_text() {
    let data = "{\"text\":\"a\",\"label\":0,\"label_text\":\"neg\"}\n\
                {\"text\":\"b\",\"label\":1,\"label_text\":\"pos\"}\n\
                {\"text\":\"c\",\"label\":0,\"label_text\":\"pos\"}\n\
                {\"text\":\"d\",\"label\":1,\"label_text\":\"neg\"}\n";
    let errors = row_errors(jsonl(data));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!((errors[0].0, errors[0].1.as_str()), (3, "label_text"));
    assert_eq!(
        errors[0].2,
        "`pos` names label 0, but line 1 named it `neg`"
    );
    assert_eq!(errors[1].0, 4);
}

#[test]
fn names_and_ids_mixed() {
    let data = "{\"text\":\"a\",\"label\":0}\n{\"text\":\"b\",\"label\":1}\n{\"text\":\"c\",\"label\":\"pos\"}\n";
    assert_one_error(
        jsonl(data),
        3,
        "label",
        "`pos` is a name, but other rows use integer ids (first on line 1)",
    );
}

#[test]
fn several_errors_are_all_reported_in_line_order() {
    let data = "id,text,label\n\
                1,,x\n\
                2,ok,\n\
                3,two,fields,too,many\n\
                4,fine,y\n\
                5,\"a\"b,y\n";
    let err = csv(data).unwrap_err();
    let lines: Vec<(usize, String)> = err
        .row_errors()
        .iter()
        .map(|e| (e.line, e.field.clone()))
        .collect();
    assert_eq!(
        lines,
        [
            (2, "text".to_string()),
            (3, "label".to_string()),
            (4, "row".to_string()),
            (6, "text".to_string())
        ]
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "invalid dataset, 4 problems: line 2: text: is empty; line 3: label: is missing"
        ),
        "{text}"
    );
}

#[test]
fn errors_are_capped_and_flagged_truncated() {
    let mut data = String::from("text,label\n");
    for i in 0..250 {
        data.push_str(if i % 2 == 0 { ",x\n" } else { "a,\n" });
    }
    let Err(DatasetError::Invalid { errors, truncated }) = csv(&data) else {
        panic!("expected Invalid");
    };
    assert_eq!(errors.len(), 100);
    assert!(truncated);
    assert_eq!(errors[0].line, 2);
    assert_eq!(errors[99].line, 101);
    let opts = ParseOptions {
        max_errors: 3,
        ..Default::default()
    };
    let err = Dataset::from_bytes(data.as_bytes(), DatasetFormat::Csv, &opts).unwrap_err();
    assert_eq!(err.row_errors().len(), 3);
    assert!(
        err.to_string()
            .starts_with("invalid dataset, more than 3 problems: line 2:"),
        "{err}"
    );
    assert!(err.to_string().ends_with("; …"), "{err}");
}

#[test]
fn row_errors_serialize_as_json() {
    let e = RowError::new(3, "text", "is empty");
    assert_eq!(e.to_string(), "line 3: text: is empty");
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"line":3,"field":"text","message":"is empty"}"#
    );
}

#[test]
fn line_numbers_follow_blank_lines_crlf_and_multiline_fields() {
    let data = "\r\n{\"text\":\"a\",\"label\":\"x\"}\r\n\r\n{\"text\":\"\",\"label\":\"y\"}\r\n";
    assert_one_error(jsonl(data), 4, "text", "is empty");
    let data = "text,label\r\n\"two\r\nlines\",x\r\n\r\n,y\r\nb,y\r\n";
    assert_one_error(csv(data), 5, "text", "is empty");
    let data = "text,label\n\"two\nlines\",x\n\n\n,y\nb,y\n";
    assert_one_error(csv(data), 6, "text", "is empty");
    let data = "text,label\ra,x\r,y\rb,y\r";
    assert_one_error(csv(data), 3, "text", "is empty");
    let data = "text,label\r\na,x\r\nb,y\r\n\"open,y\r\nc,y\r\n";
    assert_one_error(csv(data), 4, "text", "never closed");
}

// ---- label maps -------------------------------------------------------------------

#[test]
fn label_maps_built_from_the_data() {
    let ds = csv("text,label\na,pos\nb,neg\nc,neutral\nd,pos\n").unwrap();
    assert_eq!(ds.labels, ["neg", "neutral", "pos"]);
    assert_eq!(ds.label_ids(), [2, 0, 1, 2]);
    assert_eq!(ds.label_id("pos"), Some(2));

    let ds = jsonl("{\"text\":\"a\",\"label\":1}\n{\"text\":\"b\",\"label\":0}\n").unwrap();
    assert_eq!(ds.labels, ["LABEL_0", "LABEL_1"]);
    assert_eq!(ds.label_ids(), [1, 0]);

    // Digit strings (every CSV label) are ids.
    let ds = csv("text,label\na,1\nb,0\nc,2\n").unwrap();
    assert_eq!(ds.labels, ["LABEL_0", "LABEL_1", "LABEL_2"]);
    assert_eq!(ds.label_ids(), [1, 0, 2]);

    // label_text names ids, and a name label then resolves through it.
    let data = "{\"text\":\"a\",\"label\":1,\"label_text\":\"neutral\"}\n\
                {\"text\":\"b\",\"label\":0,\"label_text\":\"negative\"}\n\
                {\"text\":\"c\",\"label\":\"neutral\"}\n";
    let ds = jsonl(data).unwrap();
    assert_eq!(ds.labels, ["negative", "neutral"]);
    assert_eq!(ds.label_ids(), [1, 0, 1]);
}

#[test]
fn given_label_map() {
    let names: Vec<String> = ["b", "a", "7"].iter().map(|s| s.to_string()).collect();
    let opts = ParseOptions {
        labels: Some(&names),
        ..Default::default()
    };
    // Names map by the given order; a digit string is a name when the map has it.
    let ds = Dataset::from_bytes(
        b"text,label\nx,a\ny,b\nz,7\nw,1\n",
        DatasetFormat::Csv,
        &opts,
    )
    .unwrap();
    assert_eq!(ds.labels, names);
    assert_eq!(ds.label_ids(), [1, 0, 2, 1]);
    assert_eq!(ds.label_counts(), [1, 2, 1]);

    let data = "{\"text\":\"x\",\"label\":0,\"label_text\":\"a\"}\n{\"text\":\"y\",\"label\":1}\n";
    let result = Dataset::from_bytes(data.as_bytes(), DatasetFormat::Jsonl, &opts);
    assert_one_error(
        result,
        1,
        "label_text",
        "`a` does not match label 0, which the label map names `b`",
    );

    let dup: Vec<String> = vec!["a".into(), "a".into()];
    let opts = ParseOptions {
        labels: Some(&dup),
        ..Default::default()
    };
    let err = Dataset::from_bytes(b"text,label\nx,a\n", DatasetFormat::Csv, &opts).unwrap_err();
    assert!(matches!(err, DatasetError::BadLabelMap { .. }), "{err:?}");
}

#[test]
fn new_checks_labels_and_to_jsonl_round_trips() {
    let ex = |text: &str, label, idx| Example {
        text: text.to_string(),
        label,
        idx: Some(idx),
    };
    let names = vec!["no".to_string(), "yes".to_string()];
    assert!(Dataset::new(vec![ex("a", 2, 0)], names.clone()).is_err());
    let ds = Dataset::new(vec![ex(" a\n\"q\"", 1, 0), ex("b", 0, 1)], names).unwrap();
    let back = jsonl(std::str::from_utf8(&ds.to_jsonl()).unwrap()).unwrap();
    assert_eq!(back, ds);
}

// ---- formats ----------------------------------------------------------------------

#[test]
fn format_guessing() {
    assert_eq!(
        DatasetFormat::guess(Some(Path::new("d/TRAIN.CSV")), b"{"),
        DatasetFormat::Csv
    );
    assert_eq!(
        DatasetFormat::guess(Some(Path::new("x.jsonl")), b"a,b"),
        DatasetFormat::Jsonl
    );
    assert_eq!(
        DatasetFormat::guess(None, b"\xEF\xBB\xBF\n {\"a\":1}"),
        DatasetFormat::Jsonl
    );
    assert_eq!(
        DatasetFormat::guess(Some(Path::new("upload")), b"text,label"),
        DatasetFormat::Csv
    );
    assert_eq!("CSV".parse::<DatasetFormat>().unwrap(), DatasetFormat::Csv);
    assert!(matches!(
        "xml".parse::<DatasetFormat>(),
        Err(DatasetError::UnknownFormat(_))
    ));
}

// ---- subsets ----------------------------------------------------------------------

#[test]
fn train_subset_1000_seed_42_picks_the_tutorials_rows() {
    // The full train split has 27,481 rows; our files leave out idx 314 (empty
    // text). The recipe's rows are numpy's default_rng(42).permutation(27481)[:1000].
    let examples: Vec<Example> = (0..27_481)
        .filter(|&i| i != 314)
        .map(|i| Example {
            text: i.to_string(),
            label: 0,
            idx: Some(i),
        })
        .collect();
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::fixtures::repo_path(
            "tests/fixtures/numpy_permutations.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let expected: Vec<usize> = fixture["tutorial_selections"][0]["first_1000"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let picked: Vec<usize> = select_indices(&examples, 1000, 42)
        .into_iter()
        .map(|pos| examples[pos].idx.unwrap())
        .collect();
    assert_eq!(picked, expected);
    assert_eq!(picked[..5], [12554, 7987, 10281, 17412, 14051]);
}

#[test]
fn files_carry_each_rows_index_in_the_full_split() {
    let ds = Dataset::from_path(&tweets("train.jsonl"), None, &ParseOptions::default()).unwrap();
    let idx: Vec<Option<usize>> = ds.examples.iter().map(|e| e.idx).collect();
    assert_eq!(
        idx[313..316],
        [Some(313), Some(315), Some(316)],
        "idx 314 is left out"
    );
    let opts = ParseOptions {
        drop_empty_text: true,
        ..Default::default()
    };
    let csv = Dataset::from_path(&tweets("train.csv"), None, &opts).unwrap();
    assert_eq!(
        csv.examples, ds.examples,
        "a CSV row's idx is its record number"
    );
    let picked = select_indices(&ds.examples, 1000, 42);
    assert_eq!(picked.len(), 1000);
    let counts = picked.iter().fold([0usize; 3], |mut c, &i| {
        c[ds.examples[i].label] += 1;
        c
    });
    assert!(counts.iter().all(|&c| c > 200), "{counts:?}");
    let err =
        jsonl("{\"text\":\"a\",\"label\":0,\"idx\":3}\n{\"text\":\"b\",\"label\":1,\"idx\":3}\n");
    assert_one_error(err, 2, "idx", "is also the idx of line 1");
    assert_one_error(
        jsonl("{\"text\":\"a\",\"label\":0,\"idx\":-1}\n"),
        1,
        "idx",
        "whole number",
    );
}

const EPOCH_1_ORDER: [usize; 10] = [8, 9, 5, 3, 2, 1, 0, 7, 6, 4];

#[test]
fn epoch_orders_are_pinned() {
    // Changing `rand`/`rand_chacha` must not silently change data orders (resumed
    // jobs rely on them); update this only on purpose.
    assert_eq!(shuffled_indices_in_stream(10, 42, 1), EPOCH_1_ORDER);
}

// ---- Hub ----------------------------------------------------------------------------

const CHILD: &str = "TUNESERVE_DATASET_TEST_CHILD";
const REPO: &str = "mteb/tweet_sentiment_extraction";

/// Runs the ignored test `name` of this binary in a child process with an offline
/// Hub cache at `hf_home`; returns its output after asserting it passed.
fn run_child(name: &str, hf_home: &Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("HF_HOME", hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child {name} failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "child {name} did not run:\n{text}"
    );
    text
}

#[test]
fn hub_split_offline_with_an_empty_cache_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let text = run_child("data_dataset::child_offline_empty_cache", home.path());
    assert!(text.contains("HF_HUB_OFFLINE"), "{text}");
}

#[test]
#[ignore = "run by hub_split_offline_with_an_empty_cache_is_a_clear_error in a child process"]
fn child_offline_empty_cache() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let err = fetch_hub_split(REPO, "train").unwrap_err();
    println!("{err}");
    assert!(matches!(err, DatasetError::Hub { .. }), "{err:?}");
    let text = err.to_string();
    for needle in [
        "could not get split `train` of Hub dataset `mteb/tweet_sentiment_extraction`",
        "tried train.jsonl, data/train.jsonl, train.csv",
        "not in the local cache and HF_HUB_OFFLINE is set",
    ] {
        assert!(text.contains(needle), "`{text}` lacks `{needle}`");
    }
}

#[test]
fn hub_split_from_the_cache_tries_the_documented_files_in_order() {
    let home = tempfile::tempdir().unwrap();
    let snapshot = home
        .path()
        .join("hub/datasets--mteb--tweet_sentiment_extraction/snapshots/0123abcd");
    std::fs::create_dir_all(snapshot.join("data")).unwrap();
    let refs = snapshot.parent().unwrap().parent().unwrap().join("refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join("main"), "0123abcd").unwrap();
    let rows = "{\"text\":\"a\",\"label\":0,\"label_text\":\"negative\"}\n\
                {\"text\":\"b\",\"label\":1,\"label_text\":\"neutral\"}\n";
    std::fs::write(snapshot.join("train.jsonl"), rows).unwrap();
    std::fs::write(snapshot.join("data/train.jsonl"), "not used").unwrap();
    std::fs::write(snapshot.join("data/test.jsonl"), rows).unwrap();
    std::fs::write(snapshot.join("validation.csv"), "text,label\na,x\nb,y\n").unwrap();
    run_child("data_dataset::child_cached_splits", home.path());
}

#[test]
#[ignore = "run by hub_split_from_the_cache_tries_the_documented_files_in_order in a child process"]
fn child_cached_splits() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let path = fetch_hub_split(REPO, "train").unwrap();
    assert!(path.ends_with("0123abcd/train.jsonl"), "{}", path.display());
    let path = fetch_hub_split(REPO, "test").unwrap();
    assert!(
        path.ends_with("0123abcd/data/test.jsonl"),
        "{}",
        path.display()
    );
    let ds = load_hub_split(REPO, "test", &ParseOptions::default()).unwrap();
    assert_eq!(ds.labels, ["negative", "neutral"]);
    let ds = load_hub_split(REPO, "validation", &ParseOptions::default()).unwrap();
    assert_eq!(ds.labels, ["x", "y"]);
    assert!(matches!(
        fetch_hub_split(REPO, "other"),
        Err(DatasetError::Hub { .. })
    ));
}

#[test]
fn hub_split_rejects_bad_names_before_any_lookup() {
    assert!(matches!(
        fetch_hub_split("a/b/c", "train"),
        Err(DatasetError::BadRepo(_))
    ));
    for split in ["", "../x", "a/b", ".hidden"] {
        assert!(
            matches!(fetch_hub_split(REPO, split), Err(DatasetError::BadSplit(_))),
            "{split}"
        );
    }
}
