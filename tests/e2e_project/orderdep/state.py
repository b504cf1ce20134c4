"""What tests of this app leave behind in their process."""

prepared = False
poisoned = False
