"""Test harness: real services (PostgreSQL, Mosquitto) started and isolated per run and per test."""
