"""Fixtures shared by the test files."""
import pytest
import torch


@pytest.fixture
def one_thread():
    "One torch thread for the test, restored afterwards: tiny models run bitwise repeatably, and faster than two threads fighting over a busy 2-core machine."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
