"""LANDT channels as station instruments: program sheets from protocols, followed runs.

`plan` writes the LAND step program a protocol asks for (or refuses it with located reasons);
`launch` runs a protocol on a station's LANDT channel: sheet for the operator, then the
channel's exports followed into the database through the engine's event path
(`labctl.engine.followed`).
"""
