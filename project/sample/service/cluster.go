package service

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"dce/app/dce"
	"dce/app/kv"
)

// On a cluster the chat's shared state is in Redis, under the prefix
// redis.prefix + "sample:":
//
//	t:im:nick    nickname → member (JSON): registration, one winner per nickname
//	t:im:member  id → member (JSON): other nodes' members, for their lists
//	c:im:member  the member id counter (ids are no longer connection numbers)
//	c:im:message the message id counter
//	l:im:history the history, capped at im.history_max
//
// Presence is the engine's (app/cluster): Sessions().Online lists the
// whole cluster's members, and OnPresence says when the other nodes'
// change. Messages go to the other nodes with Hub.Publish; each node's
// OnPublish hands them to its own chat connections.
const (
	tableNick    = "im:nick"
	tableMember  = "im:member"
	counterMemb  = "im:member"
	counterMsg   = "im:message"
	logHistory   = "im:history"
	sharedPrefix = "sample:"
)

// register finds nickname in the shared registry, or registers it with an
// id from the shared counter (of two nodes registering it at once, one
// wins and both use its id).
func (s *ImWebsocketService) register(conn dce.Conn, nickname, brief string) (*Member, error) {
	ctx := context.Background()
	if b, ok, err := s.shared.Get(ctx, tableNick, nickname); err != nil {
		return nil, err
	} else if ok {
		return decodeMember(b)
	}
	id, err := s.shared.Next(ctx, counterMemb)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	full := id > int64(s.membersMax)
	s.mu.Unlock()
	if full {
		return nil, dce.Fail(400, "the room is full: %d members are registered (im.members_max)", s.membersMax)
	}
	b, _ := json.Marshal(&Member{ID: id, Nickname: nickname, Brief: brief})
	stored, created, err := s.shared.PutNew(ctx, tableNick, nickname, b)
	if err != nil {
		return nil, err
	}
	if created {
		if err := s.shared.Put(ctx, tableMember, strconv.FormatInt(id, 10), b); err != nil {
			return nil, err
		}
	}
	return decodeMember(stored)
}

func decodeMember(b []byte) (*Member, error) {
	var m Member
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// sendShared stores a message in the shared history, then pushes it to
// every logged-in connection of the cluster (one publish). A Redis that
// does not answer refuses the message with a 503: it is never dropped
// silently.
func (s *ImWebsocketService) sendShared(member int64, text, now string) (*Message, error) {
	s.mu.Lock()
	m := s.byID[member]
	limit := s.historyMax
	s.mu.Unlock()
	if m == nil {
		return nil, dce.Fail(401, "log in first")
	}
	ctx := context.Background()
	id, err := s.shared.Next(ctx, counterMsg)
	if err != nil {
		return nil, err
	}
	msg := Message{ID: id, Mid: m.ID, Message: text, CreateTime: now, Nickname: m.Nickname}
	b, _ := json.Marshal(msg)
	if err := s.shared.Append(ctx, logHistory, id, b, limit); err != nil {
		return nil, err
	}
	push := &dce.Message{Path: PathMessageList, Body: append(append([]byte{'['}, b...), ']'), Mode: dce.Merge}
	s.mu.Lock() // in order with the logins of this node (their history, then the messages after it)
	s.hub.Send(s.ownFDs(), push)
	s.mu.Unlock()
	if err := s.hub.Publish(topicMessages, push); err != nil {
		// Stored, so not lost: the other nodes' members find it in the
		// history when they next log in.
		s.hub.Logger().Warn("chat: a message reached this node only", "id", id, "err", err.Error())
	}
	return &msg, nil
}

// topicMessages carries the chat's messages to the other nodes.
const topicMessages = "sample/im"

// Published delivers another node's message to this node's chat
// connections.
func (s *ImWebsocketService) Published(topic string, m *dce.Message) {
	if topic != topicMessages {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hub.Send(s.ownFDs(), m)
}

// historyMessage is the newcomer's setMessageList: the last n messages
// (all kept when n is 0). s.mu held; on a cluster it reads Redis.
func (s *ImWebsocketService) historyMessage(n int) (*dce.Message, error) {
	if s.shared == nil {
		return dce.NewMessage(PathMessageList, s.recentLocked(n), dce.Merge)
	}
	if n <= 0 {
		n = s.historyMax
	}
	raw, err := s.shared.After(context.Background(), logHistory, 0, n)
	if err != nil {
		return nil, err
	}
	return &dce.Message{Path: PathMessageList, Body: kv.JSONArray(raw), Mode: dce.Merge}, nil
}

// sharedBefore is Before on a cluster.
func (s *ImWebsocketService) sharedBefore(id int64, limit int) ([]Message, bool, error) {
	raw, more, err := s.shared.Before(context.Background(), logHistory, id, limit)
	if err != nil {
		return nil, false, err
	}
	out := make([]Message, 0, len(raw))
	for _, b := range raw {
		var m Message
		if json.Unmarshal(b, &m) == nil {
			out = append(out, m)
		}
	}
	return out, more, nil
}

// Remote hears that members' places on other nodes changed: members this
// node has not met are read from the registry first; then everyone here
// gets the new list with the next coalesced push.
func (s *ImWebsocketService) Remote(changes map[int64]int) {
	if s.shared == nil {
		return
	}
	s.mu.Lock()
	var unknown []int64
	for id := range changes {
		if s.entry[id] == nil && !s.foreign[id] {
			unknown = append(unknown, id)
		}
	}
	s.mu.Unlock()
	met, absent := s.fetch(unknown)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range met {
		s.remember(m)
	}
	for _, id := range absent { // not in the chat's registry: another project's member
		s.foreign[id] = true
	}
	mine := false
	for id := range changes {
		if s.entry[id] == nil {
			continue
		}
		s.changes[id] = s.sessions.Places(id) > 0
		mine = true
	}
	if mine {
		s.listVer++
		s.schedule(time.Now())
	}
}

// fetch reads members by id from the shared registry, and lists the ids
// it does not hold (another project's members); those it cannot read now
// are in neither (the next change brings them again).
func (s *ImWebsocketService) fetch(ids []int64) (met []*Member, absent []int64) {
	for _, id := range ids {
		b, ok, err := s.shared.Get(context.Background(), tableMember, strconv.FormatInt(id, 10))
		switch {
		case err != nil:
		case !ok:
			absent = append(absent, id)
		default:
			if m, err := decodeMember(b); err == nil {
				met = append(met, m)
			}
		}
	}
	return met, absent
}

// openShared opens the cluster's shared store (nil, nil on one node).
func openShared(env dce.Env) (kv.Store, error) {
	if env.Config == nil || env.Config.Cluster.Redis == "" {
		return nil, nil
	}
	return kv.OpenRedis(env.Config.Cluster.Redis, env.Config.Redis.Prefix+sharedPrefix, env.Logger)
}
