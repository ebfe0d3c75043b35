-- The registry keeps its schemas in a database of its own, as dev/stack sets it up.
CREATE DATABASE registry;
