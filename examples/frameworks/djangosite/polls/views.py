"""The tutorial's polls, kept in memory so the example needs no database."""

from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

QUESTIONS = {
    7: {'id': 7, 'text': "What's new?", 'choices': {'Not much': 0, 'The sky': 0}},
    8: {'id': 8, 'text': 'Tea or coffee?', 'choices': {'Tea': 0, 'Coffee': 0}},
}


def _question(question_id):
    try:
        return QUESTIONS[question_id]
    except KeyError:
        raise Http404('No such question') from None


def index(request):
    return render(request, 'polls/index.html', {'questions': QUESTIONS.values()})


def detail(request, question_id):
    return render(request, 'polls/detail.html', {'question': _question(question_id)})


def vote(request, question_id):
    question = _question(question_id)
    choice = request.POST.get('choice')
    if request.method != 'POST' or choice not in question['choices']:
        return render(request, 'polls/detail.html',
                      {'question': question, 'error': 'You did not select a choice.'})
    question['choices'][choice] += 1
    return HttpResponseRedirect(reverse('polls:results', args=(question_id,)))


def results(request, question_id):
    return render(request, 'polls/results.html', {'question': _question(question_id)})
