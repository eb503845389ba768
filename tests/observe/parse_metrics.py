"""Parses a Prometheus text exposition from stdin with prometheus_client's parser (the
reference Python client's) and prints one JSON object per sample: {"name", "labels", "value"}.
A text the parser refuses makes it exit non-zero with the parser's message."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            print(json.dumps({"name": sample.name, "labels": sample.labels, "value": sample.value}))


if __name__ == "__main__":
    main()
