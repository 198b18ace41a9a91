

def test_warning_headers_are_read_as_client_go_reads_them() -> None:
    from kubelite.client.rest import warning_texts

    assert warning_texts([
        '299 - "would violate PodSecurity \\"restricted:latest\\": privileged"',
        '299 kube-apiserver "with a date" "Mon, 07 Dec 2026 15:00:00 GMT"',
        '199 - "not the API server\'s code"',
        '299 - unquoted',
        '299 - "never closed',
    ]) == ['would violate PodSecurity "restricted:latest": privileged', "with a date"]
